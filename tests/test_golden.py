"""Golden images: each overlay kind drawn over fixture frames, compared with tests/golden/*.png.

Regenerate (after a deliberate change, and look at them) with:
    STYLIZER_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from realtime.expression.fonts import raqm
from realtime.expression.layer import Expression, ExpressionLayer

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
W, H = 480, 270


class _FixedFace:
    """The calibration photo's face, where the Haar cascade finds it (fixed, so goldens do not depend on OpenCV)."""

    def grab(self, rgb: np.ndarray, store: dict | None = None) -> tuple[np.ndarray, float]:
        return rgb, 1.0

    def small_grey(self, rgb: np.ndarray, store: dict | None = None) -> tuple[np.ndarray, float]:
        return rgb[..., 0], 1.0

    def detect(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [(202, 40, 91, 91)]


def gradient() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([60 + 150 * x / W, 40 + 120 * y / H, 200 - 120 * x / W], -1)
    img[150:230, 40:200] = (235, 235, 225)  # a bright patch: outlines must still read on it
    return img.astype(np.uint8)


def photo() -> np.ndarray:
    img = Image.open(REPO / "engines/calibration/intel_headpose_male_0000.jpg").convert("RGB")
    return np.asarray(img.resize((W, H)))


CASES = {
    "meme_bottom": (gradient, Expression(caption="When it finally works 冲鸭！🎉", kind="meme-bottom")),
    "meme_top_yellow": (gradient, Expression(caption="MONDAY AGAIN", kind="meme-top", color="#ffd23f")),
    "subtitle_mixed": (gradient, Expression(caption="Hello 你好 こんにちは 😊\nline two", kind="subtitle")),
    "speech_face": (photo, Expression(caption="so sleepy 😴 好困", kind="speech")),
    "thought_face": (photo, Expression(caption="hmm… pizza? 🍕", kind="thought")),
    "speech_no_face": (gradient, Expression(caption="where is everyone?", kind="speech")),
    "stickers_face": (photo, Expression(emoji=("🎉", "🔥", "👍🏽"))),
    "stickers_no_face": (gradient, Expression(emoji=("😴", "💤"))),
    # Each script of the font chain (realtime/expression/fonts.py), right-to-left mixed with emoji, and the fallback glyph.
    "script_latin_ext": (gradient, Expression(caption="Łódź · İstanbul · Ελλάδα · Привет", kind="meme-bottom")),
    "script_arabic_emoji": (gradient, Expression(caption="مرحبا بالعالم 🎉 (123)", kind="meme-bottom")),
    "script_arabic_wrapped": (gradient, Expression(
        caption="صباح الخير يا أصدقائي، القهوة جاهزة ☕ والكعك أيضاً 🍰 تعالوا بسرعة قبل أن يبرد كل شيء", kind="subtitle")),
    "script_hebrew_speech": (photo, Expression(caption="שלום! 😊 מה נשמע? ok", kind="speech")),
    "script_devanagari": (gradient, Expression(caption="नमस्ते दुनिया 🙏 कि क्षि", kind="subtitle")),
    "script_thai": (gradient, Expression(caption="สวัสดีครับ ผู้ใหญ่ 😊", kind="meme-top")),
    "script_fallback": (gradient, Expression(caption="Sinhala ක is not covered", kind="meme-bottom")),
}


def render(name: str) -> np.ndarray:
    make, ex = CASES[name]
    frame = make()
    face = _FixedFace if make is photo else (lambda: None)
    layer = ExpressionLayer(detector=face, threaded_faces=False)  # type: ignore[arg-type]
    out = frame
    for _ in range(12):  # let placement settle and the glide arrive
        out = frame.copy()
        layer.draw(frame, out, ex)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_overlay_matches_golden(name: str) -> None:
    if CASES[name][1].caption and not raqm():
        # Text is drawn through HarfBuzz here; the basic layout kerns and shapes differently (test_captions.py
        # measures by how much where both are available).
        pytest.skip("this Pillow has no raqm layout (libfribidi missing): text is laid out differently")
    out = render(name)
    path = GOLDEN / f"{name}.png"
    if os.environ.get("STYLIZER_UPDATE_GOLDEN") or not path.exists():
        GOLDEN.mkdir(exist_ok=True)
        Image.fromarray(out).save(path, optimize=True)
        if not os.environ.get("STYLIZER_UPDATE_GOLDEN"):
            pytest.fail(f"golden {path.name} was missing and has been written: look at it, then commit it")
    ref = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
    diff = np.abs(out.astype(np.int16) - ref).max(axis=2)
    # Font rasterizers differ a little between FreeType builds: allow small, sparse differences.
    assert diff.mean() < 1.5 and (diff > 48).mean() < 0.01, (
        f"{name}: mean diff {diff.mean():.2f}, {(diff > 48).mean():.2%} pixels off by > 48")

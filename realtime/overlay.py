"""Captions drawn on the video: rasterized once per change, alpha-composited per frame.

Fonts come from a pip dependency (Noto Sans CJK, OFL), never from the machine,
so Latin, Chinese and Japanese render the same everywhere.
"""

from __future__ import annotations

import functools
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_CAPTION_CHARS = 200


@functools.cache
def font_path() -> Path:
    try:
        import cvttf_NotoSansCJK_Bold as pkg
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError("caption font missing: pip install cvttf-NotoSansCJK-Bold") from exc
    p = Path(pkg.__file__).parent / "NotoSansCJKtc-Bold.otf"
    if not p.is_file():  # pragma: no cover
        raise RuntimeError(f"caption font missing at {p}")
    return p


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def clean_caption(text: str) -> str:
    """Drop control characters (keep newlines), collapse to at most 3 lines."""
    text = "".join(ch for ch in text if ch == "\n" or unicodedata.category(ch)[0] != "C")
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    return "\n".join(lines[:3])


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: int) -> list[str]:
    """Greedy wrap by characters: works for CJK (no spaces) and Latin alike."""
    out: list[str] = []
    for para in text.split("\n"):
        line = ""
        for ch in para:
            if font.getlength(line + ch) <= max_width or not line:
                line += ch
            else:
                cut = line.rfind(" ")
                if cut > 0 and ch != " ":  # break Latin at the last space
                    out.append(line[:cut])
                    line = line[cut + 1 :] + ch
                else:
                    out.append(line.rstrip())
                    line = ch.lstrip()
        out.append(line)
    return [ln for ln in out if ln]


@dataclass(frozen=True)
class Sprite:
    """A premultiplied RGBA patch and where it goes: rgb (h, w, 3) float32, alpha (h, w, 1) float32."""

    x: int
    y: int
    rgb: np.ndarray
    alpha: np.ndarray

    def composite(self, frame: np.ndarray) -> None:
        """Blend onto frame (H, W, 3) uint8 in place, clipped to the frame."""
        h, w = frame.shape[:2]
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.rgb.shape[1], w), min(self.y + self.rgb.shape[0], h)
        if x1 <= x0 or y1 <= y0:
            return
        sx, sy = x0 - self.x, y0 - self.y
        region = frame[y0:y1, x0:x1]
        a = self.alpha[sy : sy + y1 - y0, sx : sx + x1 - x0]
        c = self.rgb[sy : sy + y1 - y0, sx : sx + x1 - x0]
        region[...] = (region * (1.0 - a) + c).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def render_caption(text: str, width: int, height: int) -> Sprite | None:
    """White bold text with a black outline, centred near the bottom of a (width x height) frame."""
    text = clean_caption(text)
    if not text:
        return None
    size = max(14, round(height * 0.075))
    font = _font(size)
    stroke = max(2, size // 9)
    lines = _wrap(text, font, int(width * 0.9))
    draw_probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    spacing = size // 5
    box = [math.floor(v) if i < 2 else math.ceil(v) for i, v in enumerate(draw_probe.multiline_textbbox(
        (0, 0), "\n".join(lines), font=font, stroke_width=stroke, spacing=spacing, align="center"))]
    tw, th = box[2] - box[0] + 2 * stroke, box[3] - box[1] + 2 * stroke
    img = Image.new("RGBA", (tw, th), (0, 0, 0, 0))
    ImageDraw.Draw(img).multiline_text(
        (stroke - box[0], stroke - box[1]), "\n".join(lines), font=font, fill=(255, 255, 255, 255),
        stroke_width=stroke, stroke_fill=(0, 0, 0, 255), spacing=spacing, align="center",
    )
    rgba = np.asarray(img, np.float32) / 255.0
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha * 255.0
    x = (width - tw) // 2
    y = height - th - max(8, round(height * 0.05))
    return Sprite(x=x, y=max(0, y), rgb=rgb, alpha=alpha)

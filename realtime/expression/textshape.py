"""Shaping without HarfBuzz: what Pillow's basic layout needs to draw a run in display order.

Used only where Pillow has no raqm layout (libfribidi missing at run time). Per run of one font and direction:
- Arabic letters take their joining forms (arabic-reshaper maps them to presentation forms);
- a right-to-left run is reversed by clusters (a letter keeps its marks after it, where the font expects them),
  with paired brackets mirrored;
- Devanagari's short i (U+093F), written after its consonant cluster, is drawn before it.
What it cannot do: Devanagari conjuncts show a visible virama, and marks stack without GPOS positioning.
tests/test_captions.py measures how far each script lands from HarfBuzz's drawing (docs/captions.md).
"""

from __future__ import annotations

import functools
import unicodedata

MIRROR = dict(zip("()[]{}<>«»‹›", ")(][}{><»«›‹"))
VIRAMA, SHORT_I = "\u094d", "\u093f"


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch) in ("Mn", "Mc", "Me") or ch in ("\u200c", "\u200d")


def clusters(text: str) -> list[str]:
    """A base character with the marks (and joiners) that follow it."""
    out: list[str] = []
    for ch in text:
        if out and _is_mark(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


@functools.cache
def _reshaper():  # type: ignore[no-untyped-def]
    import arabic_reshaper

    # Keep harakat (the font draws them), and no lam-alef ligature beyond what the font's presentation forms have.
    return arabic_reshaper.ArabicReshaper({"delete_harakat": False, "support_ligatures": True})


def _devanagari_i(text: str) -> str:
    """Move each short-i sign in front of the consonant cluster it follows (consonant (+ virama + consonant)*)."""
    chars = list(text)
    i = 0
    while i < len(chars):
        if chars[i] == SHORT_I and i > 0:
            start = i - 1
            while start >= 2 and chars[start - 1] == VIRAMA:
                start -= 2
            chars[start:i + 1] = [SHORT_I] + chars[start:i]
        i += 1
    return "".join(chars)


def basic_visual(text: str, rtl: bool) -> str:
    """The run as the basic layout should draw it, left to right."""
    if any("\u0600" <= ch <= "\u06ff" or "\u0750" <= ch <= "\u077f" or "\u08a0" <= ch <= "\u08ff" for ch in text):
        text = _reshaper().reshape(text)
    if any("\u0900" <= ch <= "\u097f" for ch in text):
        text = _devanagari_i(text)
    if not rtl:
        return text
    return "".join(MIRROR.get(c, c) if len(c) == 1 else c for c in reversed(clusters(text)))

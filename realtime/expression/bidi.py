"""The Unicode bidirectional algorithm (UAX #9) for one caption line, without explicit embeddings.

Captions drop the bidi control characters (textlayout.clean_text), so the rules needed are the implicit ones:
P2-P3 (paragraph direction from the first strong letter), W1-W7 (weak types), N1-N2 (neutrals), I1-I2 (levels)
and L2 (reordering). Units are characters or whole emoji clusters (an emoji is a neutral, "ON").
Shaping inside a run is the font layer's job (HarfBuzz, or textshape's fallback), not this module's.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

STRONG = {"L": "L", "R": "R", "AL": "R"}
NEUTRAL = {"B", "S", "WS", "ON", "BN", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}


def bidi_class(unit: str) -> str:
    """The class of a unit: its first character's, with emoji clusters (several characters) neutral."""
    if len(unit) != 1:
        return "ON"
    return unicodedata.bidirectional(unit) or "L"


def base_level(classes: Sequence[str]) -> int:
    """0 (left-to-right) unless the first strong letter is right-to-left (P2, P3)."""
    for c in classes:
        if c in STRONG:
            return 0 if c == "L" else 1
    return 0


def levels(classes: Sequence[str], base: int | None = None) -> list[int]:
    """Embedding level of each unit: even is left-to-right, odd right-to-left."""
    base = base_level(classes) if base is None else base
    sos = "R" if base else "L"
    t = list(classes)
    n = len(t)
    # W1: a combining mark takes the type of what it marks.
    prev = sos
    for i in range(n):
        if t[i] == "NSM":
            t[i] = prev if prev not in ("LRI", "RLI", "FSI", "PDI") else "ON"
        prev = t[i]
    # W2: European digits after Arabic letters are Arabic digits. W3: AL is R.
    last = sos
    for i in range(n):
        if t[i] in ("L", "R", "AL"):
            last = t[i]
        elif t[i] == "EN" and last == "AL":
            t[i] = "AN"
    t = ["R" if c == "AL" else c for c in t]
    # W4: one separator between two numbers of the same kind joins them.
    for i in range(1, n - 1):
        if t[i] == "ES" and t[i - 1] == "EN" and t[i + 1] == "EN":
            t[i] = "EN"
        elif t[i] == "CS" and t[i - 1] == t[i + 1] and t[i - 1] in ("EN", "AN"):
            t[i] = t[i - 1]
    # W5: terminators (%, $) next to European digits are digits.
    for i in range(n):
        if t[i] == "EN":
            j = i - 1
            while j >= 0 and t[j] == "ET":
                t[j] = "EN"
                j -= 1
            j = i + 1
            while j < n and t[j] == "ET":
                t[j] = "EN"
                j += 1
    # W6: the remaining separators and terminators are neutral.
    t = ["ON" if c in ("ES", "ET", "CS") else c for c in t]
    # W7: European digits after a left-to-right letter are left-to-right.
    last = sos
    for i in range(n):
        if t[i] in ("L", "R"):
            last = t[i]
        elif t[i] == "EN" and last == "L":
            t[i] = "L"
    # N1, N2: a run of neutrals between two of the same direction takes it, else the paragraph's.
    def strong_dir(c: str) -> str | None:
        return "L" if c == "L" else "R" if c in ("R", "EN", "AN") else None

    i = 0
    while i < n:
        if strong_dir(t[i]) is not None:
            i += 1
            continue
        j = i
        while j < n and strong_dir(t[j]) is None:
            j += 1
        before = strong_dir(t[i - 1]) if i > 0 else sos
        after = strong_dir(t[j]) if j < n else sos
        fill = before if before == after else sos
        for k in range(i, j):
            t[k] = fill
        i = j
    # I1, I2.
    out = []
    for c in t:
        if base % 2 == 0:
            out.append(base + (1 if c == "R" else 2 if c in ("AN", "EN") else 0))
        else:
            out.append(base + (1 if c in ("L", "EN", "AN") else 0))
    return out


def visual_order(lv: Sequence[int]) -> list[int]:
    """Indices in display order, left to right (L2: reverse every run at or above each odd level, highest first)."""
    order = list(range(len(lv)))
    if not lv:
        return order
    top, low = max(lv), min(lv)
    low_odd = low if low % 2 else low + 1
    for level in range(top, low_odd - 1, -1):
        i = 0
        while i < len(order):
            if lv[order[i]] >= level:
                j = i
                while j < len(order) and lv[order[j]] >= level:
                    j += 1
                order[i:j] = order[i:j][::-1]
                i = j
            else:
                i += 1
    return order

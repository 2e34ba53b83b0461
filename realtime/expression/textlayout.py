"""Caption text: cleaning, mixed-script wrapping and rasterizing (a chain of text fonts + a colour emoji font).

A line is a list of runs in logical (typed) order: emoji clusters and text. To measure or draw it, the line is
cut into pieces of one font and one direction (`pieces`): each character goes to the first font of the chain
that has it (realtime/expression/fonts.py), the bidi algorithm (realtime/expression/bidi.py) gives each a level, and the pieces are put
in display order. So "Hi 你好 مرحبا 🎉" is one caption. Rasterizing happens only when the content changes
(callers cache); nothing here runs per frame.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from realtime.expression import bidi
from realtime.expression.emoji import VS15, VS16, ZWJ, ZWNJ, split_runs
from realtime.expression.fonts import (
    FALLBACK_GLYPH,
    PRIMARY,
    emoji_font,
    face_font,
    face_for,
    face_has,
    raqm,
    text_font_has,
)
from realtime.expression.textshape import basic_visual, clusters

MAX_LINES = 4
EMOJI_SCALE = 1.12  # OpenMoji draws inside a padded em box: this matches Noto's visual height
LINE_HEIGHT = 1.28


FORMAT_KEPT = (ZWJ, ZWNJ, VS16, VS15)


def _keep(ch: str) -> bool:
    if ch == "\n" or ch in FORMAT_KEPT or 0xE0020 <= ord(ch) <= 0xE007F:
        return True  # joiners, variation selectors and flag tags are format characters we need
    # Controls, other format characters (bidi overrides such as U+202E: bidi.py orders the line) and surrogates go;
    # private-use and unassigned code points stay, to be drawn as the fallback glyph and named.
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs")


def clean_text(text: str) -> tuple[str, list[str]]:
    """Drop what is not drawable text, and swap letters no font has for the fallback glyph.

    Returns (clean text, warnings in plain words): one warning names every character no font covers.
    """
    text = "".join(ch for ch in unicodedata.normalize("NFC", text) if _keep(ch))
    missing: list[str] = []
    out = []
    for is_emoji, run in split_runs(text):
        if is_emoji:
            out.append(run)
            continue
        for ch in run:
            if ch in (VS16, VS15) or 0xE0020 <= ord(ch) <= 0xE007F:
                continue
            if ch == "\n" or text_font_has(ch):
                out.append(ch)
            else:
                missing.append(ch)
                out.append(FALLBACK_GLYPH)
    warnings = []
    if missing:
        names = ", ".join(f"{ch!r} (U+{ord(ch):04X})" for ch in dict.fromkeys(missing))
        warnings.append(f"no caption font has {names}: drawn as {FALLBACK_GLYPH}")
    lines = [" ".join(ln.split()) for ln in "".join(out).split("\n")]
    lines = [ln for ln in lines if ln]
    if len(lines) > MAX_LINES:
        warnings.append(f"only {MAX_LINES} lines are shown")
        lines = lines[:MAX_LINES]
    return "\n".join(lines), warnings


@dataclass(frozen=True)
class TextStyle:
    """How text is drawn: fill, outline (width in px), colours as RGBA tuples."""

    size: int
    fill: tuple[int, int, int, int] = (255, 255, 255, 255)
    outline: tuple[int, int, int, int] = (0, 0, 0, 255)
    outline_width: int = 0


Run = tuple[bool, str]  # (is_emoji, text)


@dataclass(frozen=True)
class Piece:
    """Part of a line drawn by one font in one direction; `text` is in logical order. face -1: an emoji."""

    face: int
    text: str
    rtl: bool


def _face_of(ch: str, prev: int | None) -> int | None:
    """The face for ch; marks, joiners and spaces stay with the face before them, so shaping sees whole words."""
    joins = unicodedata.category(ch) in ("Mn", "Mc", "Me", "Zs") or ch in (ZWJ, ZWNJ)
    if prev is not None and joins and (ch == " " or face_has(prev, ch)):
        return prev
    return face_for(ch)


@functools.lru_cache(maxsize=512)
def pieces(line: tuple[Run, ...]) -> tuple[Piece, ...]:
    """The line as pieces of one font and one direction, in display order (left to right)."""
    units: list[tuple[int, str]] = []  # (face, unit) in logical order; face -1: emoji
    prev: int | None = None
    for is_emoji, s in line:
        if is_emoji:
            units.append((-1, s))
            prev = None
            continue
        for ch in s:
            face = _face_of(ch, prev)
            if face is None:
                if ch in (ZWJ, ZWNJ):
                    continue  # a joiner no font around it knows: nothing to draw
                face, ch = PRIMARY, FALLBACK_GLYPH  # clean_text swapped these already; this is the backstop
            units.append((face, ch))
            prev = face
    lv = bidi.levels([bidi.bidi_class(u) if f >= 0 else "ON" for f, u in units])
    groups: list[tuple[int, int, str]] = []  # (face, level, text): logical runs of one face and one level
    for (face, u), level in zip(units, lv):
        if groups and face >= 0 and groups[-1][0] == face and groups[-1][1] == level:
            groups[-1] = (face, level, groups[-1][2] + u)
        else:
            groups.append((face, level, u))
    order = bidi.visual_order([g[1] for g in groups])
    return tuple(Piece(groups[i][0], groups[i][2], groups[i][1] % 2 == 1) for i in order)


def _drawn(p: Piece) -> tuple[str, str | None]:
    """(text, direction) to hand Pillow: HarfBuzz shapes logical text itself; the basic layout gets display order."""
    if raqm():
        return p.text, "rtl" if p.rtl else "ltr"
    return basic_visual(p.text, p.rtl), None


@functools.lru_cache(maxsize=8192)
def piece_width(p: Piece, size: int) -> float:
    if p.face < 0:
        return emoji_font(max(1, round(size * EMOJI_SCALE))).getlength(p.text)
    text, direction = _drawn(p)
    return face_font(p.face, size).getlength(text, direction=direction)


def _units(line: str) -> list[Run]:
    """Breakable units: each emoji cluster, and each letter of text runs with its marks."""
    units: list[Run] = []
    for is_emoji, run in split_runs(line):
        if is_emoji:
            units.append((True, run))
        else:
            units.extend((False, c) for c in clusters(run))
    return units


def _merge(units: list[Run]) -> list[Run]:
    runs: list[Run] = []
    for u in units:
        if runs and not u[0] and not runs[-1][0]:
            runs[-1] = (False, runs[-1][1] + u[1])
        else:
            runs.append(u)
    return runs


def line_width(runs: list[Run], size: int) -> float:
    return sum(piece_width(p, size) for p in pieces(tuple(runs)))


def wrap(text: str, size: int, max_width: float) -> list[list[Run]]:
    """Greedy wrap by units: breaks Latin at the last space, CJK and emoji anywhere."""
    out: list[list[Run]] = []
    for para in text.split("\n"):
        line: list[Run] = []
        for u in _units(para):
            if not line or line_width(_merge(line + [u]), size) <= max_width:
                line.append(u)
                continue
            cut = max((k for k, v in enumerate(line) if v == (False, " ")), default=-1)
            if cut > 0 and u != (False, " "):
                out.append(_merge(line[:cut]))
                line = line[cut + 1 :] + [u]
            else:
                out.append(_merge(line))
                line = [] if u == (False, " ") else [u]
        while line and line[-1] == (False, " "):
            line.pop()
        if line:
            out.append(_merge(line))
    return out


@dataclass(frozen=True)
class TextBlock:
    """Wrapped lines at one size, ready to draw."""

    lines: tuple[tuple[Run, ...], ...]
    size: int
    truncated: bool = False

    @property
    def line_height(self) -> int:
        return round(self.size * LINE_HEIGHT)

    def width(self) -> int:
        return max((round(line_width(list(ln), self.size)) for ln in self.lines), default=0)

    def height(self) -> int:
        return self.line_height * len(self.lines)


def fit(text: str, size: int, max_width: int, max_height: int, min_size: int | None = None) -> TextBlock:
    """Wrap text into a box, shrinking the size (down to min_size) and finally cutting lines with an ellipsis."""
    min_size = min_size or max(10, size // 2)
    s = size
    while True:
        lines = wrap(text, s, max_width)
        if round(s * LINE_HEIGHT) * len(lines) <= max_height or s <= min_size:
            break
        s = max(min_size, round(s * 0.88))
    keep = max(1, max_height // round(s * LINE_HEIGHT))
    truncated = len(lines) > keep
    if truncated:
        lines = lines[:keep]
        last = list(lines[-1])
        while last and line_width(last + [(False, "…")], s) > max_width:
            last = _merge(_units_of(last)[:-1])
        lines[-1] = _merge(last + [(False, "…")])
    return TextBlock(lines=tuple(tuple(ln) for ln in lines), size=s, truncated=truncated)


def _units_of(runs: list[Run]) -> list[Run]:
    units: list[Run] = []
    for is_emoji, s in runs:
        units.extend([(True, s)] if is_emoji else [(False, c) for c in clusters(s)])
    return units


def draw_block(block: TextBlock, style: TextStyle, align: str = "center") -> Image.Image:
    """RGBA image of the block, tight around the text plus its outline."""
    pad = style.outline_width + 2
    w, h = block.width() + 2 * pad, block.height() + 2 * pad
    img = Image.new("RGBA", (max(1, w), max(1, h)), (0, 0, 0, 0))
    emoji_layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw, edraw = ImageDraw.Draw(img), ImageDraw.Draw(emoji_layer)
    efont: ImageFont.FreeTypeFont = emoji_font(max(1, round(block.size * EMOJI_SCALE)))
    ascent, descent = face_font(PRIMARY, block.size).getmetrics()
    has_emoji = False
    for i, line in enumerate(block.lines):
        lw = line_width(list(line), block.size)
        x = pad + {"center": (block.width() - lw) / 2, "left": 0.0}[align]
        y = pad + block.line_height * (i + 0.5)  # vertical middle of the line: emoji anchor there
        base = y + (ascent - descent) / 2  # every text face sits on the primary face's baseline
        for p in pieces(line):
            if p.face < 0:
                edraw.text((x, y), p.text, font=efont, anchor="lm", embedded_color=True)
                has_emoji = True
            else:
                text, direction = _drawn(p)
                draw.text((x, base), text, font=face_font(p.face, block.size), anchor="ls", direction=direction,
                          fill=style.fill, stroke_width=style.outline_width, stroke_fill=style.outline)
            x += piece_width(p, block.size)
    if has_emoji:
        if style.outline_width:
            # Emoji get the same outline as text: a dilated silhouette in the outline colour underneath.
            a = emoji_layer.getchannel("A").point(lambda v: 255 if v > 24 else 0)
            halo = a.filter(ImageFilter.MaxFilter(2 * (style.outline_width // 2) + 1))
            ring = Image.new("RGBA", img.size, style.outline)
            ring.putalpha(halo)
            img = Image.alpha_composite(img, ring)
        img = Image.alpha_composite(img, emoji_layer)
    return img

"""Caption text: cleaning, mixed-script wrapping and rasterizing (text font + colour emoji font).

A line is a list of runs; each run is drawn with the font that owns it, so
"Hi 你好 こんにちは 🎉" is one caption. Rasterizing happens only when the
content changes (callers cache); nothing here runs per frame.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from realtime.emoji import VS15, VS16, ZWJ, is_rtl, split_runs
from realtime.fonts import emoji_font, text_font, text_font_has

MAX_LINES = 4
EMOJI_SCALE = 1.12  # OpenMoji draws inside a padded em box: this matches Noto's visual height
LINE_HEIGHT = 1.28


def _keep(ch: str) -> bool:
    if ch == "\n" or ch in (ZWJ, VS16, VS15) or 0xE0020 <= ord(ch) <= 0xE007F:
        return True  # emoji joiners, variation selectors and flag tags are format characters we need
    return unicodedata.category(ch)[0] != "C"  # drops controls and bidi overrides (U+202E ...)


def clean_text(text: str) -> tuple[str, list[str]]:
    """Drop what cannot be drawn; returns (clean text, warnings in plain words)."""
    text = "".join(ch for ch in unicodedata.normalize("NFC", text) if _keep(ch))
    rtl = 0
    missing: list[str] = []
    out = []
    for is_emoji, run in split_runs(text):
        if is_emoji:
            out.append(run)
            continue
        for ch in run:
            if ch in (ZWJ, VS16, VS15) or 0xE0020 <= ord(ch) <= 0xE007F:
                continue
            if is_rtl(ch):
                rtl += 1
            elif ch != "\n" and not text_font_has(ch):
                missing.append(ch)
            else:
                out.append(ch)
    warnings = []
    if rtl:
        warnings.append(f"right-to-left text (Arabic, Hebrew, ...) can't be drawn yet: {rtl} character(s) left out")
    if missing:
        sample = "".join(dict.fromkeys(missing))[:5]
        warnings.append(f"the caption font has no glyphs for {sample!r}: {len(missing)} character(s) left out")
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


def _run_width(run: Run, size: int) -> float:
    is_emoji, s = run
    if is_emoji:
        return emoji_font(max(1, round(size * EMOJI_SCALE))).getlength(s)
    return text_font(size).getlength(s)


def _units(line: str) -> list[Run]:
    """Breakable units: each emoji cluster, and each character of text runs."""
    units: list[Run] = []
    for is_emoji, run in split_runs(line):
        if is_emoji:
            units.append((True, run))
        else:
            units.extend((False, ch) for ch in run)
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
    return sum(_run_width(r, size) for r in runs)


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
        units.extend([(True, s)] if is_emoji else [(False, c) for c in s])
    return units


def draw_block(block: TextBlock, style: TextStyle, align: str = "center") -> Image.Image:
    """RGBA image of the block, tight around the text plus its outline."""
    pad = style.outline_width + 2
    w, h = block.width() + 2 * pad, block.height() + 2 * pad
    img = Image.new("RGBA", (max(1, w), max(1, h)), (0, 0, 0, 0))
    emoji_layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw, edraw = ImageDraw.Draw(img), ImageDraw.Draw(emoji_layer)
    tfont: ImageFont.FreeTypeFont = text_font(block.size)
    efont: ImageFont.FreeTypeFont = emoji_font(max(1, round(block.size * EMOJI_SCALE)))
    has_emoji = False
    for i, line in enumerate(block.lines):
        lw = line_width(list(line), block.size)
        x = pad + {"center": (block.width() - lw) / 2, "left": 0.0}[align]
        y = pad + block.line_height * (i + 0.5)  # vertical middle of the line: both fonts anchor there
        for is_emoji, s in line:
            if is_emoji:
                edraw.text((x, y), s, font=efont, anchor="lm", embedded_color=True)
                has_emoji = True
                x += efont.getlength(s)
            else:
                draw.text((x, y), s, font=tfont, anchor="lm", fill=style.fill,
                          stroke_width=style.outline_width, stroke_fill=style.outline)
                x += tfont.getlength(s)
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

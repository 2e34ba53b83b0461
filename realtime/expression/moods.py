"""Mood presets: a short casual phrase -> style blend, strength, caption style and emoji.

Matching is deterministic: the phrase is normalised (NFKC, case-folded,
punctuation and emoji dropped), then compared with each preset's phrases:
an exact match first, else the longest phrase contained in it (ties: table order).
Nothing matches -> the neutral preset, and the reply says so.
Users add or override presets with a TOML file (`realtime serve --moods FILE.toml`):

    [[mood]]
    name = "rainy day"
    phrases = ["rainy day", "下雨了"]
    weights = { monet = 0.7, hokusai = 0.3 }   # optional: omitted = keep the current style
    strength = 0.8                              # optional
    caption = "thought"                         # caption kind (see docs/protocol.md)
    color = "#cfe8ff"                           # caption text colour
    emoji = ["rain", "cloud"]                   # names, codes or emoji
"""

from __future__ import annotations

import math
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from realtime.expression.emoji import MAX_STICKERS, EmojiError, resolve
from realtime.expression.overlay import KINDS, parse_color

MAX_MOOD_CHARS = 80


class MoodError(ValueError):
    """A moods file or preset is invalid; str() says where and why."""


@dataclass(frozen=True)
class Mood:
    name: str
    phrases: tuple[str, ...]
    weights: dict[str, float] | None = None      # None: keep the current blend
    strength: float | None = None
    caption_kind: str = "meme-bottom"
    caption_color: str = "#ffffff"
    emoji: tuple[str, ...] = ()                   # resolved emoji
    keys: tuple[str, ...] = field(default=(), compare=False)  # normalised phrases

    def weights_for(self, style_names: tuple[str, ...]) -> dict[str, float] | None:
        """This preset's blend restricted to the model's styles (None when none of them exist)."""
        if not self.weights:
            return None
        w = {k: v for k, v in self.weights.items() if k in style_names and v > 0}
        return w or None


def normalise(phrase: str) -> str:
    """NFKC, case-fold, drop punctuation/symbols/emoji, collapse spaces: "Monday again…" -> "monday again"."""
    s = unicodedata.normalize("NFKC", phrase).casefold().replace("’", "'")
    kept = []
    for ch in s:
        cat = unicodedata.category(ch)
        if ch == "'" or cat[0] in "LN":
            kept.append(ch)
        elif cat[0] == "Z" or ch in "-_/":
            kept.append(" ")
        # other punctuation, symbols (emoji) and controls are dropped
    return " ".join("".join(kept).split())


# The built-in table (docs/moods.md shows it). Styles are the bundled model's; absent ones are skipped.
BUILTIN: tuple[dict, ...] = (
    dict(name="neutral", phrases=["neutral", "normal", "reset", "default"],
         strength=1.0, caption="meme-bottom", color="#ffffff", emoji=[]),
    dict(name="so sleepy", phrases=["so sleepy", "sleepy", "tired", "zzz", "好困", "困", "眠い", "ねむい"],
         weights={"monet": 0.7, "lineart": 0.3}, strength=0.7, caption="thought", color="#dfe6ff",
         emoji=["sleepy", "zzz"]),
    dict(name="冲鸭!", phrases=["冲鸭", "冲冲冲", "let's go", "lets go", "go go go", "行くぞ"],
         weights={"vangogh": 0.6, "kandinsky": 0.4}, strength=1.0, caption="meme-top", color="#ffd23f",
         emoji=["duck", "fire", "rocket"]),
    dict(name="Monday again…", phrases=["monday again", "monday", "mondays", "又是周一", "周一", "月曜日"],
         weights={"lineart": 0.6, "hokusai": 0.4}, strength=0.85, caption="subtitle", color="#c8d0e0",
         emoji=["coffee", "tired"]),
    dict(name="party time", phrases=["party time", "party", "let's party", "派对", "パーティー", "パーティ"],
         weights={"kandinsky": 0.5, "klimt": 0.5}, strength=1.0, caption="meme-bottom", color="#ff8ad8",
         emoji=["party", "confetti", "sparkles"]),
    dict(name="in love", phrases=["in love", "love", "so in love", "好喜欢", "恋"],
         weights={"klimt": 0.7, "monet": 0.3}, strength=0.9, caption="speech", color="#e0245e",
         emoji=["love", "heart", "sparkles"]),
    dict(name="chill", phrases=["chill", "relax", "vibes", "chill vibes", "放松", "まったり"],
         weights={"hokusai": 0.6, "monet": 0.4}, strength=0.8, caption="subtitle", color="#9ff5e0",
         emoji=["cool", "music"]),
    dict(name="so angry", phrases=["so angry", "angry", "rage", "气死了", "怒"],
         weights={"vangogh": 1.0}, strength=1.0, caption="meme-top", color="#ff4d4d",
         emoji=["rage", "fire", "boom"]),
    dict(name="hmm", phrases=["hmm", "thinking", "let me think", "嗯", "うーん"],
         weights={"lineart": 0.8, "monet": 0.2}, strength=0.75, caption="thought", color="#ffffff",
         emoji=["think"]),
    dict(name="wow", phrases=["wow", "omg", "amazing", "哇", "すごい"],
         weights={"kandinsky": 1.0}, strength=1.0, caption="speech", color="#ffffff",
         emoji=["wow", "sparkles"]),
)


def mood_from_dict(d: dict, where: str) -> Mood:
    """Validate one preset (from the built-in table or a TOML file)."""
    allowed = {"name", "phrases", "weights", "strength", "caption", "color", "emoji"}
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise MoodError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    name = d.get("name")
    if not isinstance(name, str) or not name.strip():
        raise MoodError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name})"
    phrases = d.get("phrases", [name])
    if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
        raise MoodError(f"{where}: 'phrases' must be a list of strings")
    keys = tuple(k for k in (normalise(p) for p in [name, *phrases]) if k)
    if not keys:
        raise MoodError(f"{where}: no usable phrase (phrases need letters or digits)")
    weights = d.get("weights")
    if weights is not None:
        if not isinstance(weights, dict) or not weights:
            raise MoodError(f"{where}: 'weights' must be a table of style = weight")
        for k, v in weights.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise MoodError(f"{where}: weight of {k!r} must be a number >= 0")
        weights = {str(k): float(v) for k, v in weights.items()}
    strength = d.get("strength")
    if strength is not None and (isinstance(strength, bool) or not isinstance(strength, (int, float))
                                 or not 0.0 <= float(strength) <= 1.0):
        raise MoodError(f"{where}: 'strength' must be between 0 and 1")
    kind = d.get("caption", "meme-bottom")
    if kind not in KINDS:
        raise MoodError(f"{where}: 'caption' must be one of {', '.join(KINDS)}")
    color = d.get("color", "#ffffff")
    try:
        parse_color(color)
    except (ValueError, AttributeError):
        raise MoodError(f"{where}: 'color' must look like #rrggbb") from None
    items = d.get("emoji", [])
    if not isinstance(items, list) or len(items) > MAX_STICKERS:
        raise MoodError(f"{where}: 'emoji' must be a list of at most {MAX_STICKERS} names")
    try:
        emoji = tuple(resolve(str(e)) for e in items)
    except EmojiError as exc:
        raise MoodError(f"{where}: {exc}") from None
    return Mood(name=name.strip(), phrases=tuple(phrases), weights=weights,
                strength=None if strength is None else float(strength), caption_kind=kind,
                caption_color=color.lower(), emoji=emoji, keys=keys)


@dataclass(frozen=True)
class Match:
    mood: Mood
    exact: bool
    known: bool  # False: nothing matched, this is the neutral fallback


class MoodBook:
    """The presets in force: built-ins, then the user's file (same name = replaced)."""

    def __init__(self, moods: list[Mood]) -> None:
        self.moods = moods
        self.neutral = next(m for m in moods if m.name == "neutral")

    @staticmethod
    def builtin() -> MoodBook:
        return MoodBook([mood_from_dict(d, f"built-in mood {i}") for i, d in enumerate(BUILTIN)])

    @staticmethod
    def load(path: str | Path | None) -> MoodBook:
        """Built-ins plus the presets in a TOML file (raises MoodError with file and reason)."""
        book = MoodBook.builtin()
        if path is None:
            return book
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise MoodError(f"{p}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise MoodError(f"{p}: not valid TOML: {exc}") from None
        extra = data.get("mood", [])
        if set(data) - {"mood"} or not isinstance(extra, list):
            raise MoodError(f"{p}: expected [[mood]] tables only")
        moods = list(book.moods)
        for i, d in enumerate(extra):
            if not isinstance(d, dict):
                raise MoodError(f"{p}: mood #{i + 1} must be a table")
            m = mood_from_dict(d, f"{p}: mood #{i + 1}")
            moods = [old for old in moods if old.name.casefold() != m.name.casefold()]
            moods.insert(0, m)  # user presets are matched before built-ins
        if not any(m.name == "neutral" for m in moods):
            moods.append(book.neutral)
        return MoodBook(moods)

    def check_styles(self, style_names: tuple[str, ...]) -> list[str]:
        """Warnings for presets whose styles the model lacks."""
        out = []
        for m in self.moods:
            missing = sorted(set(m.weights or {}) - set(style_names))
            if missing:
                out.append(f"mood {m.name!r}: style(s) {', '.join(missing)} not in this model; skipped")
        return out

    def match(self, phrase: str) -> Match:
        """The preset for a phrase (deterministic); neutral with known=False when nothing fits."""
        key = normalise(phrase)
        if not key:
            return Match(self.neutral, exact=False, known=False)
        for m in self.moods:
            if key in m.keys:
                return Match(m, exact=True, known=True)
        padded = f" {key} "
        best: tuple[int, int, Mood] | None = None
        for order, m in enumerate(self.moods):
            for k in m.keys:
                # Latin phrases match whole words; CJK (no spaces) matches as a substring.
                hit = f" {k} " in padded if k.isascii() else k in key
                if hit and (best is None or len(k) > best[0]):
                    best = (len(k), order, m)
        if best is not None:
            return Match(best[2], exact=False, known=True)
        return Match(self.neutral, exact=False, known=False)

    def table(self) -> list[dict]:
        """The presets as plain data, for /api/moods and the docs."""
        return [{"name": m.name, "phrases": list(m.phrases), "weights": m.weights, "strength": m.strength,
                 "caption": m.caption_kind, "color": m.caption_color, "emoji": list(m.emoji)} for m in self.moods]

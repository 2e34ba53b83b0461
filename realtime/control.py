"""Validation of control messages (data channel now, HTTP API later).

A message is one JSON object; every field is optional:

    {"style": "vangogh"}                           one style at full weight
    {"weights": {"vangogh": 0.5, "hokusai": 0.5}}  a blend (non-negative, normalised)
    {"strength": 0.8}                              0 = input, 1 = fully stylized
    {"caption": "hello 你好"}                       at most 200 characters; "" clears it
    {"caption": {"text": "hi", "kind": "speech", "color": "#ffd23f"}}   text, kind and colour at once
    {"caption_kind": "thought"}                    meme-bottom | meme-top | meme | subtitle | speech | thought
    {"caption_color": "#ffd23f"}                   caption text colour
    {"emoji": ["party", "1F525", "😴"]}            stickers (names, codes or emoji; at most 8); [] clears
    {"mood": "party time"}                         a preset: blend, strength, caption style, emoji
    {"id": 7}                                      echoed back in the reply

A mood is applied first, so explicit fields in the same message win over it.
The full protocol is in docs/protocol.md.

Anything else is refused with a message that says why; the session goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from realtime.emoji import MAX_STICKERS, EmojiError, resolve
from realtime.moods import MAX_MOOD_CHARS
from realtime.overlay import KINDS, MAX_CAPTION_CHARS, parse_color

FIELDS = ("style", "weights", "strength", "caption", "caption_kind", "caption_color", "emoji", "mood", "id")
MAX_MESSAGE_BYTES = 4096


class ControlError(ValueError):
    """A control message was refused; str() is the message for the client."""


@dataclass(frozen=True)
class ControlUpdate:
    weights: dict[str, float] | None = None
    strength: float | None = None
    caption: str | None = None
    caption_kind: str | None = None
    caption_color: str | None = None
    emoji: tuple[str, ...] | None = None  # resolved emoji sequences
    mood: str | None = None
    id: int | str | None = None


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ControlError(f"{name} must be finite")
    return v


def parse_control(raw: str | bytes, style_names: tuple[str, ...]) -> ControlUpdate:
    """Parse and validate one message; raises ControlError with a readable reason."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ControlError(f"message too large ({len(raw)} bytes, limit {MAX_MESSAGE_BYTES})")
    try:
        # NaN/Infinity literals are not JSON; refuse them instead of letting Python accept them.
        msg = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ControlError(f"{c} is not allowed")))
    except ControlError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ControlError(f"not valid JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ControlError("a control message must be a JSON object")
    unknown = sorted(set(msg) - set(FIELDS))
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    if "style" in msg and "weights" in msg:
        raise ControlError("give either style or weights, not both")

    weights = None
    if "style" in msg:
        if not isinstance(msg["style"], str) or msg["style"] not in style_names:
            raise ControlError(f"unknown style {msg['style']!r}; known: {', '.join(style_names)}")
        weights = {msg["style"]: 1.0}
    if "weights" in msg:
        raw_w = msg["weights"]
        if not isinstance(raw_w, dict) or not raw_w:
            raise ControlError("weights must be a non-empty object of {style: weight}")
        weights = {}
        for name, value in raw_w.items():
            if name not in style_names:
                raise ControlError(f"unknown style {name!r}; known: {', '.join(style_names)}")
            v = _number(f"weights.{name}", value)
            if v < 0:
                raise ControlError(f"weights.{name} must be >= 0")
            weights[name] = v
        if sum(weights.values()) <= 0:
            raise ControlError("at least one weight must be positive")

    strength = None
    if "strength" in msg:
        strength = _number("strength", msg["strength"])
        if not 0.0 <= strength <= 1.0:
            raise ControlError("strength must be between 0 and 1")

    caption, kind, color = None, None, None
    if "caption" in msg:
        raw_c = msg["caption"]
        if isinstance(raw_c, dict):
            extra = sorted(set(raw_c) - {"text", "kind", "color"})
            if extra:
                raise ControlError(f"unknown caption field(s): {', '.join(extra)}; allowed: text, kind, color")
            if "caption_kind" in msg and "kind" in raw_c or "caption_color" in msg and "color" in raw_c:
                raise ControlError("give the caption's kind/color once, inside caption or as caption_kind/caption_color")
            caption = _caption_text(raw_c["text"]) if "text" in raw_c else None
            kind = _kind(raw_c["kind"]) if "kind" in raw_c else None
            color = _color("caption.color", raw_c["color"]) if "color" in raw_c else None
        else:
            caption = _caption_text(raw_c)
    if "caption_kind" in msg:
        kind = _kind(msg["caption_kind"])
    if "caption_color" in msg:
        color = _color("caption_color", msg["caption_color"])

    emoji = None
    if "emoji" in msg:
        items = msg["emoji"]
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(e, str) for e in items):
            raise ControlError("emoji must be a list of names or codes, e.g. [\"party\", \"1F525\"]")
        if len(items) > MAX_STICKERS:
            raise ControlError(f"too many emoji ({len(items)}, limit {MAX_STICKERS})")
        try:
            emoji = tuple(resolve(e) for e in items)
        except EmojiError as exc:
            raise ControlError(str(exc)) from None

    mood = None
    if "mood" in msg:
        if not isinstance(msg["mood"], str):
            raise ControlError("mood must be a string, e.g. \"party time\"")
        if len(msg["mood"]) > MAX_MOOD_CHARS:
            raise ControlError(f"mood too long ({len(msg['mood'])} characters, limit {MAX_MOOD_CHARS})")
        mood = msg["mood"]

    mid = msg.get("id")
    if mid is not None and (isinstance(mid, bool) or not isinstance(mid, (int, str))):
        raise ControlError("id must be an integer or a string")
    return ControlUpdate(weights=weights, strength=strength, caption=caption, caption_kind=kind,
                         caption_color=color, emoji=emoji, mood=mood, id=mid)


def _caption_text(value: object) -> str:
    if not isinstance(value, str):
        raise ControlError("caption must be a string (or {\"text\", \"kind\", \"color\"})")
    if len(value) > MAX_CAPTION_CHARS:
        raise ControlError(f"caption too long ({len(value)} characters, limit {MAX_CAPTION_CHARS})")
    return value


def _kind(value: object) -> str:
    if value not in KINDS:
        raise ControlError(f"unknown caption kind {value!r}; known: {', '.join(KINDS)}")
    return str(value)


def _color(name: str, value: object) -> str:
    try:
        parse_color(value)  # type: ignore[arg-type]
    except (ValueError, AttributeError):
        raise ControlError(f"{name} must look like #rrggbb") from None
    return str(value).lower()

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
    {"mirror": true}                               flip the picture left-right (captions still read)
    {"id": 7}                                      echoed back in the reply

A mood is applied first, so explicit fields in the same message win over it.
The full protocol is in docs/protocol.md.

Anything else is refused with a message that says why, as one error type (ControlError), and the session
goes on: unknown fields and values, numbers out of range (more than MAX_NUMBER_DIGITS digits, or not finite),
text that is not valid UTF-8 or holds a lone surrogate, nesting deeper than MAX_DEPTH, more than
MAX_MESSAGE_BYTES. Binary data channel messages are refused by the server before they get here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from realtime.expression.emoji import MAX_STICKERS, EmojiError, resolve
from realtime.expression.moods import MAX_MOOD_CHARS
from realtime.expression.overlay import KINDS, MAX_CAPTION_CHARS, parse_color

FIELDS = ("style", "weights", "strength", "caption", "caption_kind", "caption_color", "emoji", "mood", "mirror",
          "id")
MAX_MESSAGE_BYTES = 4096
MAX_DEPTH = 4            # the protocol nests 2 deep ({"caption": {"text": ...}}); json recurses per level
MAX_NUMBER_DIGITS = 20   # an integer literal longer than this is out of range (float() of 10**310 overflows)


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
    mirror: bool | None = None
    id: int | str | None = None


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(f"{name} must be a number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        raise ControlError(f"{name} is out of range") from None
    if not math.isfinite(v):
        raise ControlError(f"{name} must be finite")
    return v


def parse_control(raw: str | bytes, style_names: tuple[str, ...]) -> ControlUpdate:
    """Parse and validate one message (text, or UTF-8 bytes such as an HTTP body); raises only ControlError,
    with a readable reason."""
    try:
        return _parse(raw, style_names)
    except ControlError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
        # A case the checks below missed: still a refusal the client can read, never an exception that
        # travels into aiortc or becomes a 500.
        raise ControlError(f"invalid control message ({type(exc).__name__})") from None


def _text(raw: str | bytes) -> str:
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ControlError(f"message too large ({len(raw)} bytes, limit {MAX_MESSAGE_BYTES})")
    if isinstance(raw, (bytes, bytearray)):
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ControlError(f"not valid JSON: the text is not UTF-8 (byte {exc.start})") from None
    if _has_surrogate(raw):  # a text message that was not UTF-8 arrives with surrogate escapes (realtime/live/guard.py)
        raise ControlError("not valid JSON: the text is not UTF-8")
    return raw


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and any("\ud800" <= c <= "\udfff" for c in text)


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before json.loads recurses into it (brackets in strings don't count)."""
    depth, in_string, escaped = 0, False, False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ControlError(f"nested too deep (limit {MAX_DEPTH} levels)")
        elif c in "]}":
            depth -= 1


def _int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ControlError(f"number out of range (more than {MAX_NUMBER_DIGITS} digits)")
    return int(literal)


def _refuse_constant(name: str) -> float:
    raise ControlError(f"{name} is not allowed")  # NaN/Infinity literals are not JSON; Python would take them


def _check_strings(value: object) -> None:
    """Every string, keys included, is valid Unicode: a lone surrogate ("\\ud800") could not be sent back."""
    if isinstance(value, str):
        if _has_surrogate(value):
            raise ControlError("strings must be valid Unicode: a lone surrogate (\\ud800-\\udfff) is not")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_strings(k)
            _check_strings(v)
    elif isinstance(value, list):
        for v in value:
            _check_strings(v)


def _parse(raw: str | bytes, style_names: tuple[str, ...]) -> ControlUpdate:
    text = _text(raw)
    _check_depth(text)
    try:
        msg = json.loads(text, parse_int=_int, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ControlError(f"not valid JSON: {exc}") from None
    _check_strings(msg)  # depth is bounded above, so this recursion is too
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

    mirror = None
    if "mirror" in msg:
        if not isinstance(msg["mirror"], bool):
            raise ControlError("mirror must be true or false")
        mirror = msg["mirror"]

    mid = msg.get("id")
    if mid is not None and (isinstance(mid, bool) or not isinstance(mid, (int, str))):
        raise ControlError("id must be an integer or a string")
    return ControlUpdate(weights=weights, strength=strength, caption=caption, caption_kind=kind,
                         caption_color=color, emoji=emoji, mood=mood, mirror=mirror, id=mid)


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

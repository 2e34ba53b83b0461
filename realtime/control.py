"""Validation of control messages (data channel now, HTTP API later).

A message is one JSON object; every field is optional:

    {"style": "vangogh"}                           one style at full weight
    {"weights": {"vangogh": 0.5, "hokusai": 0.5}}  a blend (non-negative, normalised)
    {"strength": 0.8}                              0 = input, 1 = fully stylized
    {"caption": "hello 你好"}                       at most 200 characters; "" clears it
    {"id": 7}                                      echoed back in the reply

Anything else is refused with a message that says why; the session goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from realtime.overlay import MAX_CAPTION_CHARS

FIELDS = ("style", "weights", "strength", "caption", "id")
MAX_MESSAGE_BYTES = 4096


class ControlError(ValueError):
    """A control message was refused; str() is the message for the client."""


@dataclass(frozen=True)
class ControlUpdate:
    weights: dict[str, float] | None = None
    strength: float | None = None
    caption: str | None = None
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

    caption = None
    if "caption" in msg:
        if not isinstance(msg["caption"], str):
            raise ControlError("caption must be a string")
        if len(msg["caption"]) > MAX_CAPTION_CHARS:
            raise ControlError(f"caption too long ({len(msg['caption'])} characters, limit {MAX_CAPTION_CHARS})")
        caption = msg["caption"]

    mid = msg.get("id")
    if mid is not None and (isinstance(mid, bool) or not isinstance(mid, (int, str))):
        raise ControlError("id must be an integer or a string")
    return ControlUpdate(weights=weights, strength=strength, caption=caption, id=mid)

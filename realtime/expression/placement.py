"""Where overlays go: how busy each part of the *stylized* frame is, and choices that do not jump.

Busyness is the mean gradient magnitude of a 1/8-scale grey copy, summed over
any rectangle in O(1) with an integral image. Choices change only when another
place is clearly better for several evaluations in a row (hysteresis), and
positions glide towards their target instead of snapping.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

SCALE = 8                 # busyness map is 1/8 of the frame per side
SWITCH_RATIO = 0.7        # another place must be 30% calmer ...
SWITCH_AFTER = 3          # ... for this many evaluations in a row
# After a move, stay this many evaluations (one a frame: about 2 s) before the next. Without it, stickers over a
# moving scene could go back and forth between two corners every second or so, which reads as jitter.
MIN_DWELL = 60
BUSY_ON, BUSY_OFF = 45.0, 35.0   # mean 1/8-scale gradient that turns a backing on / off (a busy photo: ~75)
GLIDE = 0.3               # per-frame share of the way to the target position

Rect = tuple[int, int, int, int]  # x, y, w, h in frame pixels


class BusyMap:
    """Gradient energy of one frame, queried per rectangle."""

    def __init__(self, rgb: np.ndarray) -> None:
        """rgb: (H, W, 3) RGB or (H, W) grey uint8."""
        h, w = rgb.shape[:2]
        self.size = (w, h)
        sw, sh = max(1, w // SCALE), max(1, h // SCALE)
        self._sw, self._sh = sw, sh
        # Buffers for refresh(), kept while the size holds: the live loop refreshes every few frames.
        self._small = np.empty((sh, sw, 3), np.uint8)
        self._grey = np.empty((sh, sw), np.uint8)
        self._g = np.empty((sh, sw), np.float32)
        self._dx = np.empty((sh, max(0, sw - 1)), np.float32)
        self._dy = np.empty((max(0, sh - 1), sw), np.float32)
        self._sum = np.zeros((sh + 1, sw + 1), np.float32)  # the integral image; row 0 and column 0 stay 0
        self.refresh(rgb)

    def refresh(self, rgb: np.ndarray) -> None:
        """Measure a new frame of the same size, in the same buffers."""
        if rgb.shape[1::-1] != self.size:
            raise ValueError(f"BusyMap of {self.size[0]}x{self.size[1]} given a {rgb.shape[1]}x{rgb.shape[0]} frame")
        sw, sh = self._sw, self._sh
        g = self._g
        if cv2 is not None:
            # Linear (not area) sampling: 10x cheaper at 1/8 scale, and a busyness estimate needs no more.
            if rgb.ndim == 2:  # already grey (a luma plane)
                cv2.resize(rgb, (sw, sh), dst=self._grey, interpolation=cv2.INTER_LINEAR)
            else:
                cv2.resize(rgb, (sw, sh), dst=self._small, interpolation=cv2.INTER_LINEAR)
                cv2.cvtColor(self._small, cv2.COLOR_RGB2GRAY, dst=self._grey)
            np.copyto(g, self._grey)
        elif rgb.ndim == 2:  # pragma: no cover
            g[...] = rgb[: sh * SCALE : SCALE, : sw * SCALE : SCALE]
        else:  # pragma: no cover
            g[...] = rgb[: sh * SCALE : SCALE, : sw * SCALE : SCALE].astype(np.float32) @ np.float32([0.299, 0.587,
                                                                                                       0.114])
        grad = self._sum[1:, 1:]
        grad.fill(0.0)
        np.subtract(g[:, 1:], g[:, :-1], out=self._dx)
        grad[:, 1:] += np.abs(self._dx, out=self._dx)
        np.subtract(g[1:], g[:-1], out=self._dy)
        grad[1:, :] += np.abs(self._dy, out=self._dy)
        np.cumsum(grad, axis=0, out=grad)
        np.cumsum(grad, axis=1, out=grad)

    def score(self, rect: Rect) -> float:
        """Mean gradient inside rect (clipped to the frame); outside the frame counts as very busy."""
        x, y, w, h = rect
        fw, fh = self.size
        inside = max(0, min(x + w, fw) - max(x, 0)) * max(0, min(y + h, fh) - max(y, 0))
        if w <= 0 or h <= 0 or inside == 0:
            return 1e9
        x0, y0 = min(max(x, 0) // SCALE, self._sw), min(max(y, 0) // SCALE, self._sh)
        x1, y1 = min(-(-min(x + w, fw) // SCALE), self._sw), min(-(-min(y + h, fh) // SCALE), self._sh)
        if x1 <= x0 or y1 <= y0:
            return 0.0
        s = self._sum
        total = s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]
        mean = float(total) / ((x1 - x0) * (y1 - y0))
        cut = 1.0 - inside / (w * h)  # a part hanging off the frame is penalised
        return mean + 200.0 * cut


@dataclass
class Choice:
    """Picks the calmest candidate, with hysteresis and a minimum stay after each move."""

    current: str | None = None
    _streak: int = 0
    _challenger: str | None = None
    _dwell: int = 0  # evaluations left before another move is allowed
    forced: bool = False  # the last choose() left a blocked place (callers jump there instead of gliding)

    def choose(self, scores: dict[str, float], blocked: Collection[str] = ()) -> str:
        """The place to use now. A `blocked` current place (it would cover something that must stay readable)
        is left at once, dwell and hysteresis notwithstanding, for the calmest place that is not blocked."""
        self.forced = False
        best = min(scores, key=lambda k: (k in blocked, scores[k], list(scores).index(k)))
        if self.current not in scores:
            self.current, self._streak, self._dwell = best, 0, 0
            return best
        if self.current in blocked and best not in blocked:
            self.current, self._streak, self._challenger, self._dwell = best, 0, None, MIN_DWELL
            self.forced = True
            return best
        if self._dwell > 0:
            self._dwell -= 1
            self._streak, self._challenger = 0, None
        elif best != self.current and scores[best] < scores[self.current] * SWITCH_RATIO - 0.5:
            self._streak = self._streak + 1 if best == self._challenger else 1
            self._challenger = best
            if self._streak >= SWITCH_AFTER:
                self.current, self._streak, self._challenger, self._dwell = best, 0, None, MIN_DWELL
        else:
            self._streak, self._challenger = 0, None
        return self.current  # type: ignore[return-value]


@dataclass
class Flag:
    """A boolean with two thresholds (on above `on`, off below `off`)."""

    on: float = BUSY_ON
    off: float = BUSY_OFF
    value: bool = False

    def update(self, x: float) -> bool:
        if self.value and x < self.off:
            self.value = False
        elif not self.value and x > self.on:
            self.value = True
        return self.value


@dataclass
class Glider:
    """A position that moves a share of the way to its target each frame."""

    pos: tuple[float, float] | None = None
    _last: tuple[int, int] = field(default=(0, 0))

    def step(self, target: tuple[float, float], snap: bool = False) -> tuple[int, int]:
        if self.pos is None or snap:
            self.pos = target
        else:
            self.pos = (self.pos[0] + (target[0] - self.pos[0]) * GLIDE, self.pos[1] + (target[1] - self.pos[1]) * GLIDE)
        self._last = (round(self.pos[0]), round(self.pos[1]))
        return self._last


def overlap(a: Rect, b: Rect) -> float:
    """Share of a covered by b."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / max(1, a[2] * a[3])


def clamp_rect(x: float, y: float, w: int, h: int, fw: int, fh: int, margin: int = 4) -> tuple[int, int]:
    """Top-left that keeps a (w x h) box inside the frame where it fits."""
    cx = min(max(x, margin), max(margin, fw - w - margin))
    cy = min(max(y, margin), max(margin, fh - h - margin))
    return round(cx), round(cy)

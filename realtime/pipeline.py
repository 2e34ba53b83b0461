"""The per-frame work, shared by the live service and `realtime stylize`:
RGB frame -> back-end (stylize) -> caption overlay -> RGB frame.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from engines.backends import Backend
from realtime.control import ControlUpdate
from realtime.overlay import render_caption


@dataclass(frozen=True)
class StyleState:
    """What a session looks like right now. Replaced whole, so a frame never sees half an update."""

    weights: dict[str, float]
    strength: float = 1.0
    caption: str = ""


@dataclass
class StageTimes:
    """Recent per-stage durations in ms (a small ring), for stats and metrics."""

    size: int = 120
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, stage: str, ms: float) -> None:
        ring = self.samples.setdefault(stage, [])
        ring.append(ms)
        if len(ring) > self.size:
            del ring[0]

    def p50(self, stage: str) -> float:
        ring = self.samples.get(stage)
        return float(np.median(ring)) if ring else 0.0


class FramePipeline:
    """Stylize + overlay for one session (or one file). The back-end may be shared; callers serialise."""

    def __init__(self, backend: Backend, state: StyleState | None = None) -> None:
        self.backend = backend
        names = backend.style_names
        self.state = state or StyleState(weights={names[0]: 1.0})
        self._vector = backend.contract.weights_vector(self.state.weights)
        self._lock = threading.Lock()
        self.times = StageTimes()

    def apply(self, update: ControlUpdate) -> StyleState:
        """Apply a validated control update; returns the new state."""
        with self._lock:
            s = self.state
            if update.weights is not None:
                s = replace(s, weights=dict(update.weights))
            if update.strength is not None:
                s = replace(s, strength=update.strength)
            if update.caption is not None:
                s = replace(s, caption=update.caption)
            self._vector = self.backend.contract.weights_vector(s.weights)
            self.state = s
            return s

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> stylized RGB uint8 with the caption drawn on it."""
        with self._lock:
            state, vector = self.state, self._vector
        t0 = time.perf_counter()
        out = self.backend.stylize(rgb, vector, state.strength)
        t1 = time.perf_counter()
        if state.caption:
            sprite = render_caption(state.caption, out.shape[1], out.shape[0])
            if sprite is not None:
                sprite.composite(out)
        t2 = time.perf_counter()
        self.times.add("network", (t1 - t0) * 1e3)
        self.times.add("overlay", (t2 - t1) * 1e3)
        return out

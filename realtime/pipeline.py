"""The per-frame work, shared by the live service and `realtime stylize`:
RGB frame -> back-end (stylize) -> expression layer (captions, bubbles, stickers) -> RGB frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from engines.backends import Backend, Planes
from realtime.expression.layer import Expression, ExpressionLayer
from realtime.expression.moods import MoodBook
from realtime.expression.overlay import Sprite
from realtime.live.control import ControlUpdate

log = logging.getLogger("realtime.pipeline")

OVERLAY_GIVE_UP = 3   # consecutive overlay failures before the overlays are switched off (until the next change)


@dataclass(frozen=True)
class StyleState:
    """What a session looks like right now. Replaced whole, so a frame never sees half an update."""

    weights: dict[str, float]
    strength: float = 1.0
    caption: str = ""
    caption_kind: str = "meme-bottom"
    caption_color: str = "#ffffff"
    emoji: tuple[str, ...] = ()
    mood: str | None = None
    mirror: bool = False  # flip the input left-right (a selfie view) before stylizing, so captions still read

    @property
    def expression(self) -> Expression:
        return Expression(caption=self.caption, kind=self.caption_kind, color=self.caption_color, emoji=self.emoji)

    def reply(self) -> dict:
        """The state as sent to the client."""
        return {"type": "state", "weights": self.weights, "strength": self.strength, "caption": self.caption,
                "caption_kind": self.caption_kind, "caption_color": self.caption_color, "emoji": list(self.emoji),
                "mood": self.mood, "mirror": self.mirror}


@dataclass
class StageTimes:
    """Recent per-stage durations in ms (a small ring each), for stats and metrics.

    Written by the inference thread, read on the event loop: readers copy the ring first."""

    size: int = 120
    samples: dict[str, deque[float]] = field(default_factory=dict)
    # Also told every sample, in seconds: the server's /metrics histograms (realtime/live/metrics.py).
    observer: Callable[[str, float], None] | None = None

    def add(self, stage: str, ms: float) -> None:
        ring = self.samples.get(stage)
        if ring is None:
            ring = self.samples.setdefault(stage, deque(maxlen=self.size))
        ring.append(ms)
        if self.observer is not None:
            self.observer(stage, ms * 1e-3)

    def recent(self, stage: str) -> list[float]:
        ring = self.samples.get(stage)
        return list(ring) if ring else []

    def pct(self, stage: str, q: float) -> float:
        ring = self.recent(stage)
        return float(np.percentile(ring, q)) if ring else 0.0

    def p50(self, stage: str) -> float:
        return self.pct(stage, 50)

    def last(self, stage: str) -> float:
        ring = self.samples.get(stage)
        return ring[-1] if ring else 0.0


class FramePipeline:
    """Stylize + overlay for one session (or one file). The back-end may be shared; callers serialise."""

    def __init__(self, backend: Backend, state: StyleState | None = None, moods: MoodBook | None = None,
                 layer: ExpressionLayer | None = None) -> None:
        self.backend = backend
        names = backend.style_names
        self.state = state or StyleState(weights={names[0]: 1.0})
        self.moods = moods or MoodBook.builtin()
        self.layer = layer or ExpressionLayer()
        self._lock = threading.Lock()
        self._bank = backend.styles
        self._vector = backend.weights_vector(self.state.weights)
        self.times = StageTimes()
        self.overlay_errors = 0
        self._overlay_failures = 0       # in a row; at OVERLAY_GIVE_UP the overlays are off until the state changes
        self._overlay_off_for: StyleState | None = None
        self.label = ""                  # who this pipeline serves, for log lines (a session or stream id)
        self._mirrored: np.ndarray | None = None  # the flipped input, reused while the size holds

    def apply(self, update: ControlUpdate) -> StyleState:
        """Apply a validated control update; returns the new state."""
        return self.apply_with_notes(update)[0]

    def apply_with_notes(self, update: ControlUpdate) -> tuple[StyleState, list[str]]:
        """Apply an update (a mood first, then explicit fields); returns the state and notes for the client."""
        notes: list[str] = []
        with self._lock:
            s = self.state
            if update.mood is not None:
                s, mood_notes = self._mood(s, update.mood)
                notes += mood_notes
            if update.weights is not None:
                s = replace(s, weights=dict(update.weights))
            if update.strength is not None:
                s = replace(s, strength=update.strength)
            if update.caption is not None:
                s = replace(s, caption=update.caption)
            if update.caption_kind is not None:
                s = replace(s, caption_kind=update.caption_kind)
            if update.caption_color is not None:
                s = replace(s, caption_color=update.caption_color)
            if update.emoji is not None:
                s = replace(s, emoji=update.emoji)
            if update.mirror is not None:
                s = replace(s, mirror=update.mirror)
            self._bank = self.backend.styles
            self._vector = self.backend.weights_vector(s.weights, strict=False)
            self.state = s
        if update.caption:
            from realtime.expression.textlayout import clean_text

            notes += clean_text(update.caption)[1]  # e.g. right-to-left letters left out
        return s, notes

    def _mood(self, s: StyleState, phrase: str) -> tuple[StyleState, list[str]]:
        match = self.moods.match(phrase)
        m = match.mood
        notes = []
        if not match.known:
            names = ", ".join(x.name for x in self.moods.moods if x.name != "neutral")
            notes.append(f"no mood matches {phrase!r}; using neutral. Try: {names}")
        weights = m.weights_for(self.backend.style_names)
        if m.weights and weights is None:
            notes.append(f"mood {m.name!r}: its styles are not in this model; style unchanged")
        s = replace(s, mood=m.name, caption_kind=m.caption_kind, caption_color=m.caption_color, emoji=m.emoji)
        if weights is not None:
            s = replace(s, weights=weights)
        if m.strength is not None:
            s = replace(s, strength=m.strength)
        return s, notes

    def warm(self, width: int, height: int) -> None:
        """Run the network once at this size: back-ends compile per input shape (OpenVINO: ~0.4 s), and a
        live input would otherwise drop every frame that arrives during that first call."""
        self.backend.stylize(np.zeros((height, width, 3), np.uint8), self._current_vector()[1], 1.0)

    def _current_vector(self) -> tuple[StyleState, np.ndarray]:
        """The state and its weight vector over the back-end's bank as it is now: a style added, renamed or
        deleted since (realtime/live/style_jobs.py) makes a new bank, and the vector is recomputed from the names
        (a deleted style's weight is dropped; nothing left means the first style)."""
        with self._lock:
            if self._bank is not self.backend.styles:
                self._bank = self.backend.styles
                self._vector = self.backend.weights_vector(self.state.weights, strict=False)
            return self.state, self._vector

    def process(self, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> stylized RGB uint8 with the overlays drawn on it (into `out` if given).

        With `out` (and a bound mirror buffer) a live frame allocates no frame-sized array."""
        state, vector = self._current_vector()
        t0 = time.perf_counter()
        if state.mirror:
            if self._mirrored is None or self._mirrored.shape != rgb.shape:
                self._mirrored = np.empty_like(rgb)
            np.copyto(self._mirrored, rgb[:, ::-1])
            rgb = self._mirrored
        out = self.backend.stylize(rgb, vector, state.strength, out=out)
        t1 = time.perf_counter()
        self._overlay(state, lambda: self.layer.draw(rgb, out, state.expression))
        t2 = time.perf_counter()
        self.times.add("network", (t1 - t0) * 1e3)
        self.times.add("overlay", (t2 - t1) * 1e3)
        return out

    @property
    def on_device(self) -> bool:
        """Whether frames go to the back-end's device as yuv420p planes (process_yuv_batch) rather than RGB."""
        return self.backend.frames_on_device

    def place_overlays(self, state: StyleState, src: np.ndarray, stylized: np.ndarray) -> list[Sprite]:
        """The device path's overlays for this frame, placed but not drawn (an empty list when off or failing)."""
        sprites: list[Sprite] = []

        def place() -> None:
            sprites.extend(self.layer.place(src, stylized, state.expression))

        self._overlay(state, place)
        return sprites

    def _overlay(self, state: StyleState, draw: Callable[[], None]) -> None:
        """Run `draw` (place or draw the overlays) when the state has any. A failing overlay never costs the
        frame: it is left out (counted in overlay_errors), and after OVERLAY_GIVE_UP failures in a row the
        overlays stay off until the next control change."""
        if not (state.caption or state.emoji) or self._overlay_off_for is state:
            self.layer.layout = {}
            self.layer.sprites = []
            return
        try:
            draw()
            self._overlay_failures = 0
        except Exception:
            self.overlay_errors += 1
            self._overlay_failures += 1
            self.layer.layout, self.layer.sprites = {}, []
            if self._overlay_failures >= OVERLAY_GIVE_UP:
                self._overlay_off_for = state
                log.exception("overlay failed %d times in a row%s; overlays off until the next change",
                              self._overlay_failures, f" ({self.label})" if self.label else "")
            elif self.overlay_errors <= 3:
                log.exception("overlay failed%s; frame sent without it", f" ({self.label})" if self.label else "")

    def close(self) -> None:
        self.layer.close()


def batch_rows(n: int, limit: int | None = None) -> int:
    """Rows a batch of n frames runs as: the next power of two (each row count is one set of device buffers
    and one CUDA graph per frame size, so a few counts serve every n), or n where that passes `limit` (a
    TensorRT engine's profile)."""
    rows = 1 << max(0, n - 1).bit_length()
    return n if limit is not None and rows > limit else rows


def process_yuv_batch(pipes: list[FramePipeline], srcs: list[Planes], dests: list[Planes]) -> None:
    """Frames of several sessions (one pipeline each, all on one device back-end, one frame size) in one call.

    Each row keeps its session's style weights, strength, mirror and overlays. The colour conversion, the
    network and the overlays' compositing run on the device; the host copies planes in and out of pinned memory
    and places the overlays (faces and calm places in the input's luma), so no RGB array is made. Rows past
    len(pipes) (up to batch_rows) keep whatever they held; their results are not read."""
    backend = pipes[0].backend
    h, w = srcs[0][0].shape
    rows = batch_rows(len(pipes), backend.max_batch)
    ins, outs = backend.yuv_rows(rows, h, w)  # type: ignore[attr-defined]  # a device back-end (frames_on_device)
    t0 = time.perf_counter()
    vectors, strengths, overlays = [], [], []
    for row, (pipe, src) in enumerate(zip(pipes, srcs, strict=True)):
        state, vector = pipe._current_vector()
        for plane, into in zip(src, ins[row], strict=True):
            np.copyto(into, plane[:, ::-1] if state.mirror else plane)
        # Calm places from the input: the result the device holds already has the overlays drawn on it.
        overlays.append(pipe.place_overlays(state, ins[row][0], ins[row][0]))
        vectors.append(vector)
        strengths.append(state.strength)
    for _ in range(rows - len(pipes)):
        vectors.append(vectors[0])
        strengths.append(strengths[0])
        overlays.append([])
    # A style added while the rows were read makes later rows' vectors longer: the shorter ones weigh it 0.
    weights = np.zeros((rows, max(len(v) for v in vectors)), np.float32)
    for row, v in enumerate(vectors):
        weights[row, : len(v)] = v
    t1 = time.perf_counter()
    backend.stylize_yuv_rows(rows, h, w, weights, np.asarray(strengths, np.float32), overlays)  # type: ignore[attr-defined]
    for row, dest in enumerate(dests):
        for plane, into in zip(outs[row], dest, strict=True):
            np.copyto(into, plane)
    t2 = time.perf_counter()
    for pipe in pipes:  # the batch's time is every row's: each waited for all of it
        pipe.times.add("overlay", (t1 - t0) * 1e3 / len(pipes))
        pipe.times.add("network", (t2 - t1) * 1e3)

"""One viewer's live session: newest-frame reader, stylized output track, stats.

aiortc queues incoming frames without bound, so a slow consumer would build
latency forever. The reader task drains the incoming track continuously and
keeps only the newest frame; older ones are counted as dropped. The heavy work
runs in the inference worker (realtime/live/worker.py), never on the event loop, and
picks the newest frame again when it starts, so waiting for the worker never
makes a frame stale.

Each frame has a budget (`Limits.budget_ms`): its time in the server, from decoded
to stylized and handed to the encoder. Frames over it are counted (`budget_misses`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from realtime.live.limits import HARD_PIXELS_FACTOR, MIN_FRAME_SIDE, Limits, scaled_size
from realtime.live.ratelimit import TokenBucket
from realtime.pipeline import FramePipeline

log = logging.getLogger("realtime.session")


class LatestFrameReader:
    """Drains `track` in a task and holds only its newest frame (and when it arrived)."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames_in = 0
        self.dropped = 0
        self.ended = False
        self.in_times: deque[float] = deque(maxlen=120)
        self.last_arrival = time.monotonic()  # the start counts as an arrival, for the idle timeout
        # (frame, arrival time). Written by the pump on the event loop, taken there by next() and on the
        # inference thread by fresher(): hence the lock.
        self._latest: tuple[av.VideoFrame, float] | None = None
        self._lock = threading.Lock()
        self._event = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                now = time.monotonic()
                self.frames_in += 1
                self.in_times.append(now)
                self.last_arrival = now
                with self._lock:
                    if self._latest is not None:
                        self.dropped += 1  # never processed: a newer frame replaced it
                    self._latest = (frame, now)  # type: ignore[assignment]  # a video track gives VideoFrames
                self._event.set()
        except (MediaStreamError, asyncio.CancelledError):
            pass
        finally:
            self.ended = True
            self._event.set()

    async def next_timed(self) -> tuple[av.VideoFrame, float]:
        """The newest frame not yet taken and its arrival time; waits for one. MediaStreamError at the end."""
        while True:
            with self._lock:
                item, self._latest = self._latest, None
            if item is not None:
                return item
            if self.ended:
                raise MediaStreamError
            self._event.clear()
            with self._lock:
                if self._latest is not None:
                    continue
            await self._event.wait()

    async def next(self) -> av.VideoFrame:
        """The newest frame not yet taken; waits for one. Raises MediaStreamError at the end."""
        return (await self.next_timed())[0]

    def fresher(self, frame: av.VideoFrame, arrival: float) -> tuple[av.VideoFrame, float]:
        """Any thread: a newer frame than `frame` if one came in meanwhile (then `frame` counts as dropped)."""
        with self._lock:
            if self._latest is None:
                return frame, arrival
            newer, self._latest = self._latest, None
            self.dropped += 1
        return newer

    def stop(self) -> None:
        self._task.cancel()


class StormGuard:
    """Tells when every frame has failed for `storm_s` seconds: time to give up on a session."""

    def __init__(self, storm_s: float) -> None:
        self.storm_s = storm_s
        self.failing_since: float | None = None

    def record(self, ok: bool) -> bool:
        """Record one frame's outcome; True when the failures have lasted storm_s."""
        now = time.monotonic()
        if ok:
            self.failing_since = None
            return False
        if self.failing_since is None:
            self.failing_since = now
        return now - self.failing_since >= self.storm_s


class FrameCheck:
    """Frame sizes the live service takes: tiny ones are sent back as they are, big ones scaled down,
    huge ones refused. Each case is reported once per size (a message for the client)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._told: set[tuple[str, int, int]] = set()
        self.notices: deque[str] = deque(maxlen=8)    # for the client, taken on the event loop
        self.fatal: str | None = None

    def plan(self, w: int, h: int) -> tuple[int, int] | None:
        """Size to stylize at, or None to send the frame back unchanged."""
        lim = self.limits
        if w < MIN_FRAME_SIDE or h < MIN_FRAME_SIDE:
            self._tell("small", w, h, f"frames of {w}x{h} are too small to stylize (at least "
                                      f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}); they are sent back unchanged")
            return None
        if w * h > lim.max_pixels * HARD_PIXELS_FACTOR:
            self.fatal = (f"frames of {w}x{h} are too big for this server (limit {lim.max_width}x{lim.max_height}, "
                          f"scaled down up to {HARD_PIXELS_FACTOR}x that area): send 1280x720 or less")
            return None
        size = scaled_size(w, h, lim.max_pixels)
        if size != (w, h):
            self._tell("big", w, h, f"frames of {w}x{h} are over this server's {lim.max_width}x{lim.max_height}: "
                                    f"stylized at {size[0]}x{size[1]}")
        return size

    def _tell(self, kind: str, w: int, h: int, message: str) -> None:
        key = (kind, w, h)
        if key not in self._told and len(self._told) < 64:
            self._told.add(key)
            self.notices.append(message)
            log.info("%s", message)


def frame_to_rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """Decoded frame -> RGB uint8 (h, w, 3) at `size` (scaled by swscale when it differs)."""
    if size == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(width=size[0], height=size[1], format="rgb24")


class StylizedTrack(MediaStreamTrack):
    """The video track sent back: each recv() stylizes the newest incoming frame."""

    kind = "video"

    def __init__(self, reader: LatestFrameReader, pipeline: FramePipeline,
                 executor: concurrent.futures.Executor, limits: Limits | None = None,
                 on_fatal: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.reader = reader
        self.pipeline = pipeline
        self.executor = executor
        self.limits = limits or Limits()
        self.check = FrameCheck(self.limits)
        self.storm = StormGuard(self.limits.storm_s)
        self.on_fatal = on_fatal
        self.frames_out = 0
        self.process_ms: deque[float] = deque(maxlen=120)
        self.out_times: deque[float] = deque(maxlen=120)
        self.size = (0, 0)
        self.errors = 0
        self.budget_misses = 0
        self.last_error = ""
        self._pending: asyncio.Future[tuple[av.VideoFrame, av.VideoFrame, float]] | None = None

    def _work(self, frame: av.VideoFrame, arrival: float) -> tuple[av.VideoFrame, av.VideoFrame, float]:
        """Inference thread: newest frame -> stylized frame (or the frame itself when it cannot be).

        Returns (the frame used, the stylized frame, its arrival time), as StreamTrack._work does."""
        frame, arrival = self.reader.fresher(frame, arrival)
        size = self.check.plan(frame.width, frame.height)
        if size is None:
            return frame, frame, arrival
        t0 = time.perf_counter()
        rgb = frame_to_rgb(frame, size)
        t1 = time.perf_counter()
        out = self.pipeline.process(rgb)
        t2 = time.perf_counter()
        new = av.VideoFrame.from_ndarray(out, format="rgb24")
        self.pipeline.times.add("convert", (t1 - t0 + time.perf_counter() - t2) * 1e3)
        return frame, new, arrival

    async def _stylize_next(self) -> tuple[av.VideoFrame, av.VideoFrame, float]:
        """Wait for the newest frame and stylize it in the worker: (frame used, stylized, arrival)."""
        frame, arrival = await self.reader.next_timed()
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        ok = True
        try:
            frame, new, arrival = await loop.run_in_executor(self.executor, self._work, frame, arrival)
        except Exception as exc:  # one bad frame must not end the session
            ok = False
            self.errors += 1
            self.last_error = str(exc) or type(exc).__name__
            if self.errors <= 3 or self.errors % 100 == 0:
                log.exception("frame processing failed (%d so far)", self.errors)
            new = frame
        if self.storm.record(ok) and self.on_fatal is not None:
            self.on_fatal(f"the stylizer failed on every frame for {self.limits.storm_s:g} s "
                          f"({self.last_error}); session ended")
        if self.check.fatal is not None and self.on_fatal is not None:
            self.on_fatal(self.check.fatal + "; session ended")
        self.process_ms.append((time.perf_counter() - t0) * 1e3)
        return frame, new, arrival

    async def recv(self) -> av.VideoFrame:
        # aiortc encodes a frame before it asks for the next one. Stylizing the next frame meanwhile
        # overlaps the two instead of taking turns: at 640x360 on 2 cores their sum came within a few ms
        # of the 33 ms frame interval, and every spike over it cost a frame.
        pending = self._pending or asyncio.ensure_future(self._stylize_next())
        self._pending = None
        frame, new, arrival = await pending  # MediaStreamError once the input has ended
        if self.readyState == "live":
            self._pending = asyncio.ensure_future(self._stylize_next())
        age_ms = (time.monotonic() - arrival) * 1e3  # arrival to handed to the encoder
        self.pipeline.times.add("age", age_ms)
        if age_ms > self.limits.budget_ms:
            self.budget_misses += 1
        new.pts = frame.pts  # the frame actually drawn (the worker may have taken a fresher one)
        new.time_base = frame.time_base or fractions.Fraction(1, 90000)
        self.frames_out += 1
        self.out_times.append(time.monotonic())
        self.size = (new.width, new.height)
        return new

    def stop(self) -> None:
        super().stop()
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not pending.done():
            pending.cancel()
        elif not pending.cancelled():
            pending.exception()  # retrieved: the input's end (MediaStreamError) is no error to log


def _rate(times: deque[float]) -> float:
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


class Session:
    """Peer connection, pipeline and tracks of one client."""

    def __init__(self, pc, pipeline: FramePipeline, limits: Limits | None = None) -> None:  # pc: RTCPeerConnection
        self.id = uuid.uuid4().hex[:8]
        self.pc = pc
        self.pipeline = pipeline
        self.limits = limits or Limits()
        self.reader: LatestFrameReader | None = None
        self.track: StylizedTrack | None = None
        self.channel = None
        self.created = time.time()
        self.control_bucket = TokenBucket()     # control messages this client may send
        self.error_bucket = TokenBucket(rate=10, burst=10)  # error replies to refused ones
        self.control_dropped = 0
        self.tasks: list[asyncio.Task] = []     # stats loop, connect/idle watch, drains: cancelled on close
        self.ignored_tracks: list[MediaStreamTrack] = []
        self.closed = False

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as one of this session's tasks (cancelled on close); after close, not at all.

        aiortc can deliver an event (a data channel opening) after the session was closed; a stats loop
        started then would never be cancelled, and would hold the session and its peer connection."""
        if self.closed:
            coro.close()
            return
        self.tasks.append(asyncio.ensure_future(coro))

    def stats(self) -> dict:
        r, t = self.reader, self.track
        times = self.pipeline.times
        return {
            "type": "stats",
            "session": self.id,
            "frames_in": r.frames_in if r else 0,
            "frames_out": t.frames_out if t else 0,
            "fps_in": round(_rate(r.in_times), 1) if r else 0.0,
            "fps_out": round(_rate(t.out_times), 1) if t else 0.0,
            "dropped": r.dropped if r else 0,
            "network_ms": round(times.p50("network"), 2),
            "overlay_ms": round(times.p50("overlay"), 2),
            "process_ms": round(float(np.median(t.process_ms)), 2) if t and t.process_ms else 0.0,
            "age_ms": round(times.p50("age"), 1),
            "age_p95_ms": round(times.pct("age", 95), 1),
            "budget_ms": self.limits.budget_ms,
            "budget_misses": t.budget_misses if t else 0,
            "width": t.size[0] if t else 0,
            "height": t.size[1] if t else 0,
            "errors": t.errors if t else 0,
            "overlay_errors": self.pipeline.overlay_errors,
        }

    async def close(self) -> None:
        self.closed = True
        me = asyncio.current_task()
        for task in self.tasks:
            if task is not me:  # a watch task may be the one closing this
                task.cancel()
        if self.reader is not None:
            self.reader.stop()
        if self.track is not None:
            self.track.stop()
        for track in self.ignored_tracks:
            track.stop()
        await close_pc(self.pc)


async def close_pc(pc, timeout_s: float = 10.0) -> None:
    """pc.close() that never raises or hangs. aiortc can fail part-way for a peer that never got going
    (e.g. an offer with a data channel and no video: its SCTP transport has nothing to unregister from),
    which would leave the ICE and DTLS transports, and their sockets, open: those are stopped here."""
    try:
        await asyncio.wait_for(pc.close(), timeout_s)
        return
    except Exception as exc:  # noqa: BLE001  (aiortc raises AttributeError and friends here)
        log.warning("closing a peer connection failed part-way (%s: %s); stopping its transports directly",
                    type(exc).__name__, exc)
    transports = []
    for t in pc.getTransceivers():
        dtls = t.receiver.transport
        transports += [dtls, getattr(dtls, "transport", None)]
    sctp = pc.sctp
    if sctp is not None and sctp.transport is not None:
        transports += [sctp.transport, getattr(sctp.transport, "transport", None)]
    for tr in transports:
        if tr is None:
            continue
        try:
            await asyncio.wait_for(tr.stop(), timeout_s)
        except Exception:  # noqa: BLE001, S110  (best effort: the rest must still be stopped)
            pass
    pc.remove_all_listeners()


async def drain(track: MediaStreamTrack) -> None:
    """Read a track nobody uses and throw the frames away: aiortc would queue them without bound."""
    try:
        while True:
            await track.recv()
    except (MediaStreamError, asyncio.CancelledError):
        pass

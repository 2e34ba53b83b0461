"""The parts of a live track that a web session (session.py) and a WHIP stream (streams.py) share.

- LatestFrameReader drains an incoming track and keeps only its newest frame (aiortc queues without bound);
- FrameCheck decides the size a frame is stylized at (tiny ones pass through, big ones are scaled down, huge
  ones end the session); StormGuard tells when every frame has failed for too long;
- FrameStep is one frame's trip: in the inference worker, a fresher frame if one came in, the plan, the
  conversion and the pipeline; on the event loop, its error, storm, budget and stats accounting.

Each frame has a budget (`Limits.budget_ms`): its time in the server, from decoded to stylized and handed to
the encoder. Frames over it are counted (`budget_misses`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engines.backends import Planes
from realtime.live.limits import HARD_PIXELS_FACTOR, MIN_FRAME_SIDE, Limits, scaled_size
from realtime.pipeline import FramePipeline, process_yuv_batch

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


def plane_array(frame: av.VideoFrame) -> np.ndarray:
    """A writable (h, w, 3) view of a packed RGB frame's memory (rows keep FFmpeg's padded line size)."""
    plane = frame.planes[0]
    return np.ndarray((frame.height, frame.width, 3), np.uint8, buffer=plane, strides=(plane.line_size, 3, 1))


def yuv_arrays(frame: av.VideoFrame) -> Planes:
    """Writable (Y, U, V) views of a yuv420p frame's planes (rows keep FFmpeg's padded line sizes)."""
    return tuple(np.ndarray((p.height, p.width), np.uint8, buffer=p, strides=(p.line_size, 1))  # type: ignore[return-value]
                 for p in frame.planes)


def rate(times: deque[float]) -> float:
    """Events per second over the times kept (monotonic seconds, oldest first); 0 for fewer than two."""
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


class FrameStep:
    """One frame through the stylizer, with the accounting a track keeps (errors, storm, budget, stats).

    `work` runs in the inference worker: the reader's fresher frame if one came in meanwhile, the size plan,
    then on a CPU back-end the conversion to RGB, the pipeline and the conversion back (to `out_format`), on
    a device back-end the yuv420p planes in and out (the result is yuv420p, which every encoder takes). `run` is its event-loop side:
    one bad frame is sent back as it came and counted, and `on_fatal` hears of an error storm or a frame too
    big to take. `handed` is called when the stylized frame goes to the encoder(s): age, budget and rate.
    """

    def __init__(self, pipeline: FramePipeline, executor: concurrent.futures.Executor, limits: Limits, *,
                 out_format: str = "rgb24", fatal_suffix: str = "", logger: logging.Logger = log) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.limits = limits
        self.check = FrameCheck(limits)
        self.storm = StormGuard(limits.storm_s)
        # rgb24 for one encoder; yuv420p where several encoders share the frame: each would otherwise call
        # frame.reformat() on it at once, from several threads, through the frame's one cached SwsContext
        # (which is not thread-safe: a viewer's sender stalled).
        self.out_format = out_format
        self.fatal_suffix = fatal_suffix      # added to fatal messages, e.g. "; session ended"
        self.log = logger
        self.on_fatal: Callable[[str], None] | None = None
        # Inference thread, after the pipeline: (width, height) of the frame it stylized, e.g. for the overlay
        # feed's snapshot.
        self.on_processed: Callable[[tuple[int, int]], None] | None = None
        self.processed = 0                    # frames through the pipeline (the network ran)
        self.frames_out = 0                   # frames handed to the encoder(s)
        self.errors = 0
        self.budget_misses = 0
        self.last_error = ""
        self.process_ms: deque[float] = deque(maxlen=120)
        self.out_times: deque[float] = deque(maxlen=120)
        self.size = (0, 0)

    def work(self, reader: LatestFrameReader, frame: av.VideoFrame,
             arrival: float) -> tuple[av.VideoFrame, av.VideoFrame, float]:
        """Inference thread: newest frame -> stylized frame (or the frame itself when it cannot be).

        Returns (the frame used, the stylized frame, its arrival time): the worker may take a fresher frame.
        One frame is a batch of one (FrameJob.run_batch), so both go one way."""
        ok, value = FrameJob.run_batch([FrameJob(self, reader, frame, arrival)])[0]
        if not ok:
            raise value
        return value

    def take(self, reader: LatestFrameReader, frame: av.VideoFrame,
             arrival: float) -> tuple[av.VideoFrame, float, tuple[int, int] | None]:
        """The reader's fresher frame if one came in meanwhile, its arrival, and the size to stylize it at (None:
        send it back as it is)."""
        frame, arrival = reader.fresher(frame, arrival)
        return frame, arrival, self.check.plan(frame.width, frame.height)

    def yuv_ok(self, size: tuple[int, int]) -> bool:
        """Whether this size goes to the device as yuv420p planes (a device back-end; yuv420p needs even sides)."""
        return self.pipeline.on_device and size[0] % 2 == 0 and size[1] % 2 == 0

    def stylize_rgb(self, frame: av.VideoFrame, size: tuple[int, int]) -> av.VideoFrame:
        """The host path: RGB in, stylized straight into the outgoing frame's memory (no frame-sized array)."""
        t0 = time.perf_counter()
        rgb = frame_to_rgb(frame, size)
        t1 = time.perf_counter()
        new = av.VideoFrame(size[0], size[1], "rgb24")
        self.pipeline.process(rgb, plane_array(new))
        self.processed += 1
        if self.on_processed is not None:
            self.on_processed(size)
        t2 = time.perf_counter()
        if self.out_format != "rgb24":
            new = new.reformat(format=self.out_format)
        self.pipeline.times.add("convert", (t1 - t0 + time.perf_counter() - t2) * 1e3)
        return new

    async def run(self, reader: LatestFrameReader, frame: av.VideoFrame,
                  arrival: float) -> tuple[av.VideoFrame, av.VideoFrame, float]:
        """Event loop: `work` in the executor, with its accounting; (frame used, stylized, arrival)."""
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        ok = True
        try:
            frame, new, arrival = await loop.run_in_executor(self.executor, FrameJob(self, reader, frame, arrival))
        except Exception as exc:  # one bad frame must not end the session or stream
            ok = False
            self.errors += 1
            self.last_error = str(exc) or type(exc).__name__
            if self.errors <= 3 or self.errors % 100 == 0:
                self.log.exception("frame processing failed (%d so far)", self.errors)
            new = frame
        if self.storm.record(ok) and self.on_fatal is not None:
            self.on_fatal(f"the stylizer failed on every frame for {self.limits.storm_s:g} s "
                          f"({self.last_error}){self.fatal_suffix}")
        if self.check.fatal is not None and self.on_fatal is not None:
            self.on_fatal(self.check.fatal + self.fatal_suffix)
        self.process_ms.append((time.perf_counter() - t0) * 1e3)
        return frame, new, arrival

    def handed(self, new: av.VideoFrame, arrival: float) -> None:
        """The stylized frame goes to the encoder(s) now: its age in the server, the budget, the output rate."""
        age_ms = (time.monotonic() - arrival) * 1e3
        self.pipeline.times.add("age", age_ms)
        if age_ms > self.limits.budget_ms:
            self.budget_misses += 1
        self.frames_out += 1
        self.out_times.append(time.monotonic())
        self.size = (new.width, new.height)

    def stats(self) -> dict[str, Any]:
        """The output side of a session's or stream's stats (the input side is the reader's)."""
        return output_stats(self.pipeline, self.limits, self)


def stylize_yuv(steps: list[FrameStep], frames: list[av.VideoFrame], size: tuple[int, int]) -> list[av.VideoFrame]:
    """Frames of several tracks on one device back-end, at one size: PyAV's yuv420p planes in, one batched
    call, the results' planes out into new frames (no RGB on the host)."""
    t0 = time.perf_counter()
    srcs, news = [], []
    for frame in frames:
        if frame.format.name != "yuv420p" or (frame.width, frame.height) != size:
            frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
        srcs.append(yuv_arrays(frame))
        news.append(av.VideoFrame(size[0], size[1], "yuv420p"))
    convert_ms = (time.perf_counter() - t0) * 1e3 / len(frames)
    process_yuv_batch([s.pipeline for s in steps], srcs, [yuv_arrays(f) for f in news])
    for step in steps:
        step.processed += 1
        if step.on_processed is not None:
            step.on_processed(size)
        step.pipeline.times.add("convert", convert_ms)
    return news


class FrameJob:
    """One frame's trip through the inference worker. On a device back-end the worker may run it in one batch
    with other tracks' jobs (worker.py): `batch_key` says which may share a call, `run_batch` runs them."""

    __slots__ = ("arrival", "frame", "reader", "step")

    def __init__(self, step: FrameStep, reader: LatestFrameReader, frame: av.VideoFrame, arrival: float) -> None:
        self.step, self.reader, self.frame, self.arrival = step, reader, frame, arrival

    def __call__(self) -> tuple[av.VideoFrame, av.VideoFrame, float]:
        return self.step.work(self.reader, self.frame, self.arrival)

    @property
    def batch_key(self) -> int | None:
        pipe = self.step.pipeline
        return id(pipe.backend) if pipe.on_device else None

    @staticmethod
    def run_batch(jobs: list[FrameJob]) -> list[tuple[bool, Any]]:
        """Each job's outcome, (True, (frame used, stylized, arrival)) or (False, exception), in order. Each
        takes its newest frame now; those that go to the device at one size share one call."""
        outcomes: list[tuple[bool, Any]] = [(False, RuntimeError("not run"))] * len(jobs)
        by_size: dict[tuple[int, int], list[tuple[int, av.VideoFrame, float]]] = {}
        for i, job in enumerate(jobs):
            try:
                frame, arrival, size = job.step.take(job.reader, job.frame, job.arrival)
                if size is None:
                    outcomes[i] = (True, (frame, frame, arrival))
                elif job.step.yuv_ok(size):
                    by_size.setdefault(size, []).append((i, frame, arrival))
                else:
                    outcomes[i] = (True, (frame, job.step.stylize_rgb(frame, size), arrival))
            except Exception as exc:  # noqa: BLE001  (this job's frame fails alone)
                outcomes[i] = (False, exc)
        for size, items in by_size.items():
            try:
                news = stylize_yuv([jobs[i].step for i, _, _ in items], [f for _, f, _ in items], size)
            except Exception as exc:  # noqa: BLE001
                if len(items) == 1:
                    outcomes[items[0][0]] = (False, exc)
                    continue
                # One bad row must not cost the others their frame (nor, in a storm, their session).
                log.warning("a batch of %d frames failed (%s); running them one by one", len(items), exc)
                for i, frame, arrival in items:
                    try:
                        outcomes[i] = (True, (frame, stylize_yuv([jobs[i].step], [frame], size)[0], arrival))
                    except Exception as alone:  # noqa: BLE001  (this frame fails alone)
                        outcomes[i] = (False, alone)
                continue
            for (i, frame, arrival), new in zip(items, news, strict=True):
                outcomes[i] = (True, (frame, new, arrival))
        return outcomes


def output_stats(pipeline: FramePipeline, limits: Limits, step: FrameStep | None = None) -> dict[str, Any]:
    """Stats of the frames handed on: the pipeline's stage times, and the step's counters (0 before a step)."""
    times = pipeline.times
    return {
        "fps_out": round(rate(step.out_times), 1) if step else 0.0,
        "network_ms": round(times.p50("network"), 2),
        "overlay_ms": round(times.p50("overlay"), 2),
        "process_ms": round(float(np.median(step.process_ms)), 2) if step and step.process_ms else 0.0,
        "age_ms": round(times.p50("age"), 1),
        "age_p95_ms": round(times.pct("age", 95), 1),
        "budget_ms": limits.budget_ms,
        "budget_misses": step.budget_misses if step else 0,
        "width": step.size[0] if step else 0,
        "height": step.size[1] if step else 0,
        "errors": step.errors if step else 0,
        "overlay_errors": pipeline.overlay_errors,
    }


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

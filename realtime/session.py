"""One viewer's live session: newest-frame reader, stylized output track, stats.

aiortc queues incoming frames without bound, so a slow consumer would build
latency forever. The reader task drains the incoming track continuously and
keeps only the newest frame; older ones are counted as dropped. The heavy work
runs in a dedicated executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import time
import uuid
from collections import deque

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from realtime.pipeline import FramePipeline
from realtime.ratelimit import TokenBucket

log = logging.getLogger("realtime.session")


class LatestFrameReader:
    """Drains `track` in a task and holds only its newest frame."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames_in = 0
        self.dropped = 0
        self.ended = False
        self.in_times: deque[float] = deque(maxlen=120)
        self._latest: av.VideoFrame | None = None
        self._event = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.frames_in += 1
                self.in_times.append(time.monotonic())
                if self._latest is not None:
                    self.dropped += 1  # never processed: a newer frame replaced it
                self._latest = frame
                self._event.set()
        except (MediaStreamError, asyncio.CancelledError):
            pass
        finally:
            self.ended = True
            self._event.set()

    async def next(self) -> av.VideoFrame:
        """The newest frame not yet returned; waits for one. Raises MediaStreamError at the end."""
        while self._latest is None:
            if self.ended:
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        frame, self._latest = self._latest, None
        return frame

    def stop(self) -> None:
        self._task.cancel()


class StylizedTrack(MediaStreamTrack):
    """The video track sent back: each recv() stylizes the newest incoming frame."""

    kind = "video"

    def __init__(self, reader: LatestFrameReader, pipeline: FramePipeline,
                 executor: concurrent.futures.Executor) -> None:
        super().__init__()
        self.reader = reader
        self.pipeline = pipeline
        self.executor = executor
        self.frames_out = 0
        self.process_ms: deque[float] = deque(maxlen=120)
        self.out_times: deque[float] = deque(maxlen=120)
        self.size = (0, 0)
        self.errors = 0

    def _work(self, frame: av.VideoFrame) -> av.VideoFrame:
        rgb = frame.to_ndarray(format="rgb24")
        out = self.pipeline.process(rgb)
        new = av.VideoFrame.from_ndarray(out, format="rgb24")
        return new

    async def recv(self) -> av.VideoFrame:
        frame = await self.reader.next()
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self.executor, self._work, frame)
        except Exception:  # one bad frame must not end the session
            self.errors += 1
            log.exception("frame processing failed")
            new = frame
        self.process_ms.append((time.perf_counter() - t0) * 1e3)
        new.pts = frame.pts
        new.time_base = frame.time_base or fractions.Fraction(1, 90000)
        self.frames_out += 1
        self.out_times.append(time.monotonic())
        self.size = (frame.width, frame.height)
        return new


def _rate(times: deque[float]) -> float:
    if len(times) < 2:
        return 0.0
    span = times[-1] - times[0]
    return (len(times) - 1) / span if span > 0 else 0.0


class Session:
    """Peer connection, pipeline and tracks of one client."""

    def __init__(self, pc, pipeline: FramePipeline) -> None:  # pc: RTCPeerConnection
        self.id = uuid.uuid4().hex[:8]
        self.pc = pc
        self.pipeline = pipeline
        self.reader: LatestFrameReader | None = None
        self.track: StylizedTrack | None = None
        self.channel = None
        self.created = time.time()
        self.control_bucket = TokenBucket()     # control messages this client may send
        self.error_bucket = TokenBucket(rate=10, burst=10)  # error replies to refused ones
        self.control_dropped = 0

    def stats(self) -> dict:
        r, t = self.reader, self.track
        return {
            "type": "stats",
            "session": self.id,
            "frames_in": r.frames_in if r else 0,
            "frames_out": t.frames_out if t else 0,
            "fps_in": round(_rate(r.in_times), 1) if r else 0.0,
            "fps_out": round(_rate(t.out_times), 1) if t else 0.0,
            "dropped": r.dropped if r else 0,
            "network_ms": round(self.pipeline.times.p50("network"), 2),
            "overlay_ms": round(self.pipeline.times.p50("overlay"), 2),
            "process_ms": round(float(np.median(t.process_ms)), 2) if t and t.process_ms else 0.0,
            "width": t.size[0] if t else 0,
            "height": t.size[1] if t else 0,
            "errors": t.errors if t else 0,
        }

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.stop()
        if self.track is not None:
            self.track.stop()
        await self.pc.close()

"""One viewer's live session: its peer connection, stylized output track, control buckets and stats.

aiortc queues incoming frames without bound, so a slow consumer would build latency forever: the reader
(realtime/live/track.py) drains the incoming track and keeps only the newest frame. The heavy work runs in
the inference worker (realtime/live/worker.py), never on the event loop, and picks the newest frame again
when it starts, so waiting for the worker never makes a frame stale.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import av
from aiortc import MediaStreamTrack

from realtime.live.limits import Limits
from realtime.live.ratelimit import TokenBucket
from realtime.live.track import FrameStep, LatestFrameReader, close_pc, output_stats, rate
from realtime.pipeline import FramePipeline

log = logging.getLogger("realtime.session")


class StylizedTrack(MediaStreamTrack):
    """The video track sent back: each recv() stylizes the newest incoming frame (its `step`)."""

    kind = "video"

    def __init__(self, reader: LatestFrameReader, pipeline: FramePipeline,
                 executor: concurrent.futures.Executor, limits: Limits | None = None,
                 on_fatal: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.reader = reader
        self.pipeline = pipeline
        self.step = FrameStep(pipeline, executor, limits or Limits(), fatal_suffix="; session ended", logger=log)
        self.step.on_fatal = on_fatal
        self._pending: asyncio.Future[tuple[av.VideoFrame, av.VideoFrame, float]] | None = None

    async def _stylize_next(self) -> tuple[av.VideoFrame, av.VideoFrame, float]:
        """Wait for the newest frame and stylize it in the worker: (frame used, stylized, arrival)."""
        frame, arrival = await self.reader.next_timed()
        return await self.step.run(self.reader, frame, arrival)

    async def recv(self) -> av.VideoFrame:
        # aiortc encodes a frame before it asks for the next one. Stylizing the next frame meanwhile
        # overlaps the two instead of taking turns: at 640x360 on 2 cores their sum came within a few ms
        # of the 33 ms frame interval, and every spike over it cost a frame.
        pending = self._pending or asyncio.ensure_future(self._stylize_next())
        self._pending = None
        frame, new, arrival = await pending  # MediaStreamError once the input has ended
        if self.readyState == "live":
            self._pending = asyncio.ensure_future(self._stylize_next())
        self.step.handed(new, arrival)  # arrival to handed to the encoder
        new.pts = frame.pts  # the frame actually drawn (the worker may have taken a fresher one)
        new.time_base = frame.time_base or fractions.Fraction(1, 90000)
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
        out = output_stats(self.pipeline, self.limits, t.step if t else None)
        return {
            "type": "stats",
            "session": self.id,
            "frames_in": r.frames_in if r else 0,
            "frames_out": t.step.frames_out if t else 0,
            "fps_in": round(rate(r.in_times), 1) if r else 0.0,
            "dropped": r.dropped if r else 0,
            **out,
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



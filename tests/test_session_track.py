"""The stylized track's bookkeeping: a frame sent back carries the timestamp of the frame it was drawn from.

The worker takes the newest frame again when it starts (a fresher one may have come in while the frame it
was handed waited); the output then shows that newer picture, so it must carry the newer frame's pts, or
the browser would time it 33 ms too early. Real parts: an aiortc track, the newest-frame reader, the bundled
default model on its default back-end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import threading

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack

from engines.loader import load_backend
from realtime.live.session import LatestFrameReader, StylizedTrack
from realtime.pipeline import FramePipeline

pytestmark = pytest.mark.unit


class QueueTrack(MediaStreamTrack):
    """A video track fed by the test, one frame at a time."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[av.VideoFrame] = asyncio.Queue()

    async def recv(self) -> av.VideoFrame:
        return await self.queue.get()


class GatedExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs each job only once `gate` is set: the test decides what the worker finds when it starts."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.gate = threading.Event()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        def gated():
            self.gate.wait(timeout=30)
            return fn(*args, **kwargs)
        return super().submit(gated)


def frame(pts: int, value: int) -> av.VideoFrame:
    return as_frame(np.full((64, 96, 3), value, np.uint8), pts)


def as_frame(rgb: np.ndarray, pts: int) -> av.VideoFrame:
    f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    f.pts, f.time_base = pts, fractions.Fraction(1, 90000)
    return f


def halves(pts: int, bright_left: bool) -> av.VideoFrame:
    rgb = np.full((64, 96, 3), 40, np.uint8)
    (rgb[:, :48] if bright_left else rgb[:, 48:])[:] = 220
    return as_frame(rgb, pts)


def test_a_fresher_frame_taken_by_the_worker_lends_the_output_its_pts() -> None:
    async def run() -> tuple[int, int, np.ndarray]:
        source = QueueTrack()
        reader = LatestFrameReader(source)
        executor = GatedExecutor()
        track = StylizedTrack(reader, FramePipeline(load_backend(None, "auto", 1)), executor)
        try:
            await source.queue.put(halves(3000, bright_left=False))
            while reader.frames_in < 1:
                await asyncio.sleep(0.005)
            out = asyncio.ensure_future(track.recv())      # takes pts 3000, then waits for the worker
            await asyncio.sleep(0.05)
            await source.queue.put(halves(6000, bright_left=True))  # a newer frame comes in meanwhile
            while reader.frames_in < 2:
                await asyncio.sleep(0.005)
            executor.gate.set()
            new = await asyncio.wait_for(out, 30)
            return new.pts, reader.dropped, new.to_ndarray(format="rgb24").astype(np.float32)
        finally:
            reader.stop()
            executor.shutdown(wait=False)

    pts, dropped, got = asyncio.run(run())
    assert dropped == 1, "the older frame should count as dropped once the worker took the newer one"
    assert pts == 6000, f"the output shows the newer frame but carries pts {pts}"
    # Which frame the output was drawn from: the same pipeline's picture of each. A painting style maps any flat
    # field to its own colours, so the frames differ in layout (which half is bright), not in brightness.
    pipe = FramePipeline(load_backend(None, "auto", 1))
    older, newer = (pipe.process(halves(0, b).to_ndarray(format="rgb24")).astype(np.float32) for b in (False, True))
    d_new, d_old = float(np.abs(got - newer).mean()), float(np.abs(got - older).mean())
    assert d_new < d_old, f"the output is nearer the older frame's picture ({d_old:.1f}) than the newer's ({d_new:.1f})"


def test_the_next_frame_is_stylized_while_the_last_one_is_encoded() -> None:
    """aiortc encodes a frame before it asks for the next. The track stylizes the next frame meanwhile, so
    the two overlap: the work for a frame that came in after recv() returned is done before recv() is called
    again, and that recv() hands it over at once."""

    async def run() -> tuple[int, int, int, float]:
        source = QueueTrack()
        reader = LatestFrameReader(source)
        executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        track = StylizedTrack(reader, FramePipeline(load_backend(None, "auto", 1)), executor)
        try:
            await source.queue.put(frame(3000, 40))
            first = await asyncio.wait_for(track.recv(), 30)
            # "Encoding" the first frame: no recv() for now. The next frame arrives meanwhile.
            await source.queue.put(frame(6000, 200))
            for _ in range(3000):
                if len(track.step.process_ms) >= 2:
                    break
                await asyncio.sleep(0.01)
            done_before_asked = len(track.step.process_ms)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            second = await asyncio.wait_for(track.recv(), 30)
            handover_ms = (loop.time() - t0) * 1e3
            return first.pts, second.pts, done_before_asked, handover_ms / max(track.step.process_ms[-1], 1e-3)
        finally:
            track.stop()
            reader.stop()
            executor.shutdown(wait=False)

    first, second, done_before_asked, handover_ratio = asyncio.run(run())
    assert (first, second) == (3000, 6000)
    assert done_before_asked == 2, "the next frame was not stylized until aiortc asked for it"
    assert handover_ratio < 0.5, f"recv() took {handover_ratio:.2f} of a frame's stylizing time to hand it over"

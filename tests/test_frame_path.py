"""The live frame path allocates nothing per frame, on the CPU and on a device back-end, and sessions on one
device share batched calls (issue 26, parts 2 and 3).

Real parts: the bundled default model, a real newest-frame reader, PyAV frames at 1280x720 made from a committed
photo, and the same FrameStep the web sessions and WHIP streams use. The device path runs the torch-cuda
back-end's code on torch's CPU device (where no GPU is lent, that is the same code path, minus CUDA graphs).

How allocations are counted: numpy's buffers are traced by tracemalloc. Per frame, after warm-up, the rise of
tracemalloc's peak over what was held before the frame bounds the largest buffer the step made. A frame-sized
buffer is at least a chroma plane: 230,400 bytes at 1280x720, 57,600 at 640x360. numpy's ufunc cast buffers
(8192 elements: about 35 KB on the CPU path) and small objects stay under the bounds below, so a rise under the
bound means no frame-sized buffer. The device path runs at 640x360: torch's CPU device takes 0.6 s a frame at 720p.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fractions
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from PIL import Image

from engines.artifact import DEFAULT_MODEL_DIR, load_artifact
from engines.backend_torch_cuda import TorchCudaBackend
from engines.loader import load_backend
from realtime.live.control import ControlUpdate
from realtime.live.limits import Limits
from realtime.live.track import FrameStep, LatestFrameReader
from realtime.live.worker import MAX_BATCH, InferenceWorker
from realtime.pipeline import FramePipeline

pytestmark = pytest.mark.unit

PHOTO = Path(__file__).parent / "fidelity" / "kodim04.png"
WARMUP, FRAMES = 10, 100
# Per path: the frame size, and a bound under its smallest frame-sized buffer (a chroma plane).
SIZES = {"cpu": ((1280, 720), 128 * 1024), "device": ((640, 360), 48 * 1024)}


class IdleTrack(MediaStreamTrack):
    """A video track that never delivers: the step is handed its frames directly."""

    kind = "video"

    async def recv(self) -> av.VideoFrame:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def camera_frames(n: int, size: tuple[int, int]) -> list[av.VideoFrame]:
    """yuv420p frames as a decoder hands them over: the photo, panning a pixel a frame."""
    w, h = size
    rgb = np.asarray(Image.open(PHOTO).convert("RGB").resize((w + n, h), Image.Resampling.BICUBIC))
    frames = []
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:, i : i + w]), format="rgb24").reformat(
            format="yuv420p")
        f.pts, f.time_base = i * 3000, fractions.Fraction(1, 90000)
        frames.append(f)
    return frames


def frame_peaks(step: FrameStep, frames: list[av.VideoFrame]) -> tuple[list[int], list[av.VideoFrame]]:
    """Each frame's tracemalloc peak rise (bytes) through step.work after WARMUP frames, and the outputs."""

    async def run() -> tuple[list[int], list[av.VideoFrame]]:
        reader = LatestFrameReader(IdleTrack())
        try:
            outs = [step.work(reader, f, 0.0)[1] for f in frames[:WARMUP]]
            peaks = []
            tracemalloc.start()
            try:
                for f in frames[WARMUP:]:
                    held = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    outs.append(step.work(reader, f, 0.0)[1])
                    peaks.append(tracemalloc.get_traced_memory()[1] - held)
            finally:
                tracemalloc.stop()
            return peaks, outs
        finally:
            reader.stop()

    return asyncio.run(run())


def make_step(backend_factory: Callable[[], object], caption: bool) -> FrameStep:
    pipe = FramePipeline(backend_factory())  # type: ignore[arg-type]
    pipe.layer._threaded = False  # faces inline: a detection thread's buffers would land in another frame's count
    if caption:
        # A caption and stickers that stay (a bubble re-drawn for a new tail direction is new content: its
        # sprite is made once, like a new caption's).
        pipe.apply(ControlUpdate(caption="made of paint", caption_kind="meme-bottom", emoji=("🎨", "✨")))
    return FrameStep(pipe, concurrent.futures.ThreadPoolExecutor(1), Limits())


def cpu_backend() -> object:
    return load_backend(None, "auto", 1)


def device_backend() -> object:
    return TorchCudaBackend(load_artifact(DEFAULT_MODEL_DIR), "fp32", device="cpu")


@pytest.mark.parametrize("caption", [False, True], ids=["plain", "captioned"])
@pytest.mark.parametrize("path", ["cpu", "device"])
def test_a_live_frame_makes_no_frame_sized_buffer(path: str, caption: bool) -> None:
    step = make_step(cpu_backend if path == "cpu" else device_backend, caption)
    assert step.pipeline.on_device == (path == "device")
    size, bound = SIZES[path]
    peaks, outs = frame_peaks(step, camera_frames(WARMUP + FRAMES, size))
    big = [(i, p) for i, p in enumerate(peaks) if p >= bound]
    assert not big, f"frames that made a buffer of frame size (frame, bytes): {big[:5]} (median {np.median(peaks)})"
    assert step.processed == WARMUP + FRAMES and step.errors == 0
    last = outs[-1]
    assert (last.width, last.height) == size
    if caption:
        assert "caption" in step.pipeline.layer.layout and "stickers" in step.pipeline.layer.layout


def test_the_device_path_draws_what_the_cpu_path_draws() -> None:
    """The same frame and caption through both paths: yuv420p on the device (conversion, network, overlay
    compositing there) against RGB on the host. They differ by colour rounding and chroma subsampling only."""
    frames = camera_frames(WARMUP, SIZES["device"][0])
    pictures = []
    for factory in (cpu_backend, device_backend):
        step = make_step(factory, caption=False)
        step.pipeline.apply(ControlUpdate(caption="made of paint", caption_kind="meme-bottom"))
        _, outs = frame_peaks(step, frames)  # no frames past warm-up: just the outputs
        pictures.append(outs[-1].to_ndarray(format="rgb24").astype(np.float32))
        layout = step.pipeline.layer.layout
    cpu, dev = pictures
    mse = float(np.mean((cpu - dev) ** 2))
    psnr = 10 * np.log10(255.0**2 / max(mse, 1e-9))
    print(f"device path vs CPU path: {psnr:.1f} dB")
    assert psnr >= 30, f"device path vs CPU path: {psnr:.1f} dB"
    x, y, w, h = layout["caption"]
    assert np.abs(cpu[y : y + h, x : x + w] - dev[y : y + h, x : x + w]).mean() < 8, "the caption differs"


def test_sessions_on_one_device_share_one_batched_call() -> None:
    """Four sessions' frames queued at once on a device back-end run as one batched call of the worker, each
    row with its own style, strength and caption; each picture matches that session's frame run alone."""
    backend = device_backend()
    names = backend.style_names  # type: ignore[attr-defined]
    size = SIZES["device"][0]
    frames = camera_frames(4, size)
    updates = [ControlUpdate(weights={names[0]: 1.0}),
               ControlUpdate(weights={names[5]: 1.0}, strength=0.6),
               ControlUpdate(weights={names[2]: 0.5, names[3]: 0.5}, caption="row three", caption_kind="meme-top"),
               ControlUpdate(weights={names[7]: 1.0}, mirror=True)]
    worker = InferenceWorker("test", max_batch=MAX_BATCH)

    def steps() -> list[FrameStep]:
        out = []
        for u in updates:
            pipe = FramePipeline(backend)  # type: ignore[arg-type]
            pipe.layer._threaded = False
            pipe.apply(u)
            out.append(FrameStep(pipe, worker, Limits()))
        return out

    async def run() -> tuple[list[np.ndarray], list[np.ndarray]]:
        readers = [LatestFrameReader(IdleTrack()) for _ in updates]
        try:
            alone = []
            for step, reader, f in zip(steps(), readers, frames, strict=True):  # one at a time: batches of one
                alone.append((await step.run(reader, f, 0.0))[1].to_ndarray(format="rgb24"))
            assert worker.batches == 0
            gate = worker.submit(time.sleep, 0.5)  # the worker is busy while the four frames queue up
            together = await asyncio.gather(*(s.run(r, f, 0.0) for s, r, f in zip(steps(), readers, frames,
                                                                                     strict=True)))
            gate.result()
            return alone, [t[1].to_ndarray(format="rgb24") for t in together]
        finally:
            for r in readers:
                r.stop()

    try:
        alone, together = asyncio.run(run())
    finally:
        worker.shutdown()
    assert list(worker.batch_sizes) == [4], f"batches run: {list(worker.batch_sizes)}"
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert np.abs(a.astype(int) - b).max() <= 2, f"session {i}: its row differs from its frame run alone"
    # And the rows are their own: every pair of sessions' pictures differs.
    for i in range(4):
        for j in range(i + 1, 4):
            assert np.abs(together[i].astype(int) - together[j]).mean() > 5, (i, j)


def test_a_failing_row_costs_only_its_own_frame() -> None:
    """One session of a batch fails after its frame is stylized (its overlay feed's hook raises): the batch is
    run again row by row, and only that session counts an error."""
    backend = device_backend()
    frames = camera_frames(3, SIZES["device"][0])
    worker = InferenceWorker("test", max_batch=MAX_BATCH)
    steps = [FrameStep(FramePipeline(backend), worker, Limits()) for _ in frames]  # type: ignore[arg-type]

    def broken(size: tuple[int, int]) -> None:
        raise RuntimeError("this session's feed is broken")

    steps[1].on_processed = broken

    async def run() -> list[av.VideoFrame]:
        readers = [LatestFrameReader(IdleTrack()) for _ in steps]
        try:
            gate = worker.submit(time.sleep, 0.5)
            outs = await asyncio.gather(*(s.run(r, f, 0.0) for s, r, f in zip(steps, readers, frames, strict=True)))
            gate.result()
            return [o[1] for o in outs]
        finally:
            for r in readers:
                r.stop()

    try:
        outs = asyncio.run(run())
    finally:
        worker.shutdown()
    assert list(worker.batch_sizes) == [3]
    assert [s.errors for s in steps] == [0, 1, 0]
    assert outs[1] is frames[1], "the failed session's frame goes back as it came"
    assert outs[0] is not frames[0] and outs[0].format.name == "yuv420p"

@pytest.mark.gpu
def test_the_live_path_on_the_gpu_makes_no_host_frame() -> None:
    """On a CUDA GPU (scripts/gpu_check.sh): the same step at 1280x720 on torch-cuda FP16, captioned, with the
    buffers counted as above, and the server-side ms per frame and per batch of 8 printed for the record."""
    backend = load_backend(None, "torch-cuda-fp16")
    assert backend.frames_on_device
    step = make_step(lambda: backend, caption=True)
    frames = camera_frames(WARMUP + FRAMES, (1280, 720))
    t0 = time.perf_counter()
    peaks, _ = frame_peaks(step, frames)
    per_frame_ms = (time.perf_counter() - t0) * 1e3 / len(frames)
    big = [(i, p) for i, p in enumerate(peaks) if p >= 128 * 1024]
    assert not big, f"frames that made a buffer of frame size (frame, bytes): {big[:5]}"
    print(f"live step, 1280x720, torch-cuda-fp16, captioned: {per_frame_ms:.2f} ms a frame (warm-up included); "
          f"network+transfers p50 {step.pipeline.times.p50('network'):.2f} ms")
    worker = InferenceWorker("gpu", max_batch=MAX_BATCH)
    steps = [FrameStep(FramePipeline(backend), worker, Limits()) for _ in range(8)]

    async def batches(rounds: int) -> float:
        readers = [LatestFrameReader(IdleTrack()) for _ in steps]
        try:
            t = time.perf_counter()
            for r in range(rounds):
                gate = worker.submit(time.sleep, 0.002)
                await asyncio.gather(*(s.run(rd, frames[(r + i) % len(frames)], 0.0)
                                       for i, (s, rd) in enumerate(zip(steps, readers, strict=True))))
                gate.result()
            return (time.perf_counter() - t) * 1e3 / rounds
        finally:
            for rd in readers:
                rd.stop()

    try:
        asyncio.run(batches(3))  # graphs for the batch shapes
        ms = asyncio.run(batches(20))
    finally:
        worker.shutdown()
    assert max(worker.batch_sizes) == 8
    print(f"8 sessions at 1280x720 in batches of 8: {ms:.2f} ms a batch, {8000 / ms:.0f} frames/s")

"""`python -m train eval`, the speed pair: the teacher's network in PyTorch eager FP32 against a student on the
CPU back-end `auto` picks on a machine without a GPU, timed interleaved at 640x360, batch 1."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from train.eval_metrics import Reference, to_uint8

if TYPE_CHECKING:
    from engines.backends import Backend

SPEED_SIZE = (640, 360)  # (width, height): where realtime bench measures its speed ratio too
SPEED_WARMUP = 1  # untimed calls per side before the (also untimed) k estimate: first calls allocate
MAX_STUDENT_CALLS = 50  # student frames per timed round at most, however much faster it is


@dataclass
class SpeedSide:
    label: str
    runs_on: str
    params: int
    macs: int  # per 640x360 frame
    frames: int  # frames timed
    ms_per_frame: float  # median over the rounds

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms_per_frame


@dataclass
class SpeedPair:
    """The teacher and one student, timed in the same interleaved run."""

    teacher: SpeedSide
    student: SpeedSide
    threads: int

    @property
    def speedup(self) -> float:
        return self.teacher.ms_per_frame / self.student.ms_per_frame


def cpu_backend(path: str | Path, threads: int) -> Backend:
    """The back-end `auto` picks for a model folder on a machine without a GPU (onnx-int8, onnx or torch).
    engines' own rule decides, told to leave any GPU out, so a GPU here cannot change the answer."""
    from engines.loader import load_backend

    return load_backend(path, "auto", threads, allow_gpu=False)


FrameFn = Callable[[np.ndarray], object]


def _teacher_fn(net: torch.nn.Module, num_styles: int) -> FrameFn:
    """One frame through the teacher as a back-end takes it, RGB uint8 in and out, first style at strength 1."""
    weights, strength = torch.eye(num_styles)[:1], torch.ones(1, 1)

    @torch.inference_mode()
    def run(frame: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div_(255.0)
        return to_uint8(net(x, weights, strength).clamp(0.0, 1.0))

    return run


def _ms_per_frame(fn: FrameFn, frames: list[np.ndarray], count: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(count):
        fn(frames[(start + i) % len(frames)])
    return (time.perf_counter() - t0) * 1e3 / count


def time_interleaved(slow: FrameFn, fast: FrameFn, frames: list[np.ndarray], rounds: int) -> tuple[float, float, int]:
    """Median ms/frame of `slow` (one frame a round) and `fast` (k frames a round, k so a round takes about as
    long on each side), alternating which goes first: load on the machine hits both alike and cancels from
    the ratio. Returns (slow ms, fast ms, k)."""
    for i in range(SPEED_WARMUP):
        _ms_per_frame(slow, frames, 1, i)
        _ms_per_frame(fast, frames, 1, i)
    k = int(np.clip(round(_ms_per_frame(slow, frames, 1, 0) / _ms_per_frame(fast, frames, 1, 0)), 1,
                    MAX_STUDENT_CALLS))
    per_slow: list[float] = []
    per_fast: list[float] = []
    for r in range(rounds):
        order = [(per_slow, slow, 1), (per_fast, fast, k)]
        for acc, fn, count in order if r % 2 == 0 else order[::-1]:
            acc.append(_ms_per_frame(fn, frames, count, r * count))
    return float(np.median(per_slow)), float(np.median(per_fast)), k


def speed_frames(video: list[np.ndarray], count: int = 8) -> list[np.ndarray]:
    """A few clip frames at 640x360 (stretched if the clip is not 16:9: the content barely moves the time)."""
    return [np.asarray(Image.fromarray(f).resize(SPEED_SIZE, Image.Resampling.BILINEAR)) for f in video[:count]]


def speed_pair(ref: Reference, label: str, frames: list[np.ndarray], rounds: int,
               threads: int | None = None) -> SpeedPair:
    """The teacher's network (PyTorch eager FP32) against the student folder `label` on its default CPU
    back-end, both on `threads` threads (default: all cores), `rounds` teacher frames."""
    from engines.backends import default_threads
    from engines.student import count_macs as student_macs
    from train.teacher_checkpoint import stylizer_macs
    from train.teacher_net import count_params

    net = getattr(ref.model, "net", None)
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"{ref.label}: speed times the teacher's network; this reference has none")
    threads = threads or default_threads()
    backend = cpu_backend(label, threads)
    vec = backend.contract.weights_vector({ref.model.style_names[0]: 1.0})
    buf = np.empty_like(frames[0])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ms_t, ms_s, k = time_interleaved(_teacher_fn(net, len(ref.model.style_names)),
                                         lambda f: backend.stylize(f, vec, 1.0, out=buf), frames, rounds)
    finally:
        torch.set_num_threads(before)
        backend.close()
    w, h = SPEED_SIZE
    art = backend.artifact
    teacher = SpeedSide(ref.label, "torch eager FP32", count_params(net), stylizer_macs(net, h, w), rounds, ms_t)
    student = SpeedSide(label, backend.name, count_params(art.load_student()), student_macs(art.config, h, w),
                        rounds * k, ms_s)
    return SpeedPair(teacher, student, threads)

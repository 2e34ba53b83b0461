"""The look/speed frontier: each student at full and reduced internal resolution, its look scores and its time
per 640x360 frame on the default CPU back-end, in one run.

At a reduced scale the frame is shrunk (area filter), stylized, and brought back either bilinearly or along the
input's edges (engines/guided_upsample.py). The time includes the shrink and the upsampling.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from engines.backends import Backend
from engines.guided_upsample import guided_upsample
from engines.loader import load_backend
from train.data import LOOK_PORTRAITS
from train.eval_metrics import load_student_or_teacher
from train.look import LookScores, descriptor, face_rate, mean_descriptor, score
from train.look_eval import look_photos, reference_images

FRAME = (640, 360)


@dataclass(frozen=True)
class FrontierRow:
    model: str
    scale: float
    upsample: str
    scores: LookScores
    faces_full: float
    ms: float


def stylize_at(backend: Backend, rgb: np.ndarray, weights: np.ndarray, scale: float, upsample: str) -> np.ndarray:
    """One frame through the network at `scale` of its size, brought back by `upsample` ("guided"/"bilinear")."""
    if scale == 1.0:
        return backend.stylize(rgb, weights)
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out = backend.stylize(small, weights)
    if upsample == "guided":
        return guided_upsample(small, out, rgb)
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)


def _run_style(backend: Backend, eye: np.ndarray, scale: float, upsample: str, rgb: np.ndarray,
               style: int) -> np.ndarray:
    return stylize_at(backend, rgb, eye[style], scale, upsample)


def ms_per_frame(fn: Callable[[np.ndarray], np.ndarray], frame: np.ndarray, count: int = 20) -> float:
    for _ in range(3):
        fn(frame)
    times = []
    for _ in range(count):
        t = time.perf_counter()
        fn(frame)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def frontier(models: Sequence[str], scales: Sequence[float] = (1.0, 0.75, 0.5)) -> list[FrontierRow]:
    photos = look_photos()
    portraits = look_photos(names=LOOK_PORTRAITS)
    frame = cv2.resize(photos[0], FRAME, interpolation=cv2.INTER_AREA)
    rows = []
    for path in models:
        ref_model = load_student_or_teacher(path)
        styles = tuple(ref_model.style_names)
        refs = [mean_descriptor([descriptor(r) for r in reference_images(p)]) for p in ref_model.style_refs]
        backend = load_backend(path)
        eye = np.eye(len(styles), dtype=np.float32)
        for scale in scales:
            for up in (("none",) if scale == 1.0 else ("guided", "bilinear")):
                run = partial(_run_style, backend, eye, scale, up)
                scores = score(photos, refs, styles, lambda i, j, run=run: run(photos[i], j))
                faces = float(np.mean([face_rate(portraits, [run(p, j) for p in portraits]) for j in range(len(styles))]))
                ms = ms_per_frame(lambda f, run=run: run(f, 0), frame)
                rows.append(FrontierRow(path, scale, up, scores, faces, ms))
                print(f"{path} x{scale} {up}: top-1 {scores.top1:.2f}, mean gain {scores.mean_gain:.2f}, "
                      f"min gain {scores.min_gain:.2f}, faces {faces:.2f}, {ms:.1f} ms", flush=True)
        backend.close()
    return rows


def frontier_md(rows: Sequence[FrontierRow], backend: str) -> list[str]:
    md = [f"| model | internal scale | upsampling | top-1 | mean gain | min gain | faces @1 | ms / 640x360 ({backend}) |",
          "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {Path(r.model).name} | {r.scale:g} | {r.upsample} | {r.scores.top1:.2f} | "
                  f"{r.scores.mean_gain:.2f} | {r.scores.min_gain:.2f} | {r.faces_full:.2f} | {r.ms:.1f} |")
    return md

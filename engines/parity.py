"""Parity of a back-end against the PyTorch FP32 reference: PSNR on real and random frames, pure styles and blends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.backends import Backend
from engines.contract import IOContract

FIXTURE_FRAMES = Path(__file__).resolve().parent / "calibration"


def calibration_frames(folder: Path | None = None, height: int = 360, width: int = 640,
                       limit: int | None = None) -> list[np.ndarray]:
    """RGB uint8 frames for calibration: JPEG/PNG files in `folder` (default: the bundled Kodak set).

    `limit` takes that many files spread evenly over the sorted list (video frame folders are long)."""
    from PIL import Image, ImageOps

    folder = folder or FIXTURE_FRAMES
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise FileNotFoundError(f"no calibration images in {folder}")
    if limit is not None and len(paths) > limit:
        paths = [paths[round(i * (len(paths) - 1) / max(1, limit - 1))] for i in range(limit)]
    return [np.asarray(ImageOps.fit(Image.open(p).convert("RGB"), (width, height))) for p in paths]


# The acceptance floor per precision (dB, 8-bit RGB output).
THRESHOLD_DB = {"fp32": 45.0, "fp16": 35.0, "bf16": 35.0, "int8": 32.0}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def parity_frames(height: int = 360, width: int = 640, real: int = 4, seed: int = 0) -> list[np.ndarray]:
    """`real` bundled calibration photos (Kodak, Intel) fitted to the size, plus one uniform-noise frame."""
    frames = calibration_frames(height=height, width=width)[:real]
    frames.append(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
    return frames


def parity_mixes(contract: IOContract) -> list[tuple[str, np.ndarray]]:
    """Every pure style, an even blend of all, and a two-style blend."""
    names = contract.style_names
    mixes = [(n, contract.weights_vector({n: 1.0})) for n in names]
    mixes.append(("even blend", np.full(len(names), 1.0 / len(names), np.float32)))
    if len(names) > 1:
        mixes.append((f"{names[0]}+{names[-1]}", contract.weights_vector({names[0]: 0.3, names[-1]: 0.7})))
    return mixes


@dataclass
class Parity:
    min_db: float
    mean_db: float
    worst: str  # which frame and mix gave min_db

    def ok(self, precision: str) -> bool:
        return self.min_db >= THRESHOLD_DB[precision]

    def __str__(self) -> str:
        return f"min {self.min_db:.1f} dB (worst: {self.worst}), mean {self.mean_db:.1f} dB"


def measure(backend: Backend, reference: Backend, frames: list[np.ndarray],
            mixes: list[tuple[str, np.ndarray]], strength: float = 1.0) -> Parity:
    """PSNR of backend vs reference over every frame x mix; the minimum is what a threshold checks."""
    scores: list[tuple[float, str]] = []
    for i, frame in enumerate(frames):
        for label, vec in mixes:
            a = backend.stylize(frame, vec, strength)
            b = reference.stylize(frame, vec, strength)
            scores.append((psnr(a, b), f"frame {i}, {label}"))
    worst = min(scores)
    return Parity(min_db=worst[0], mean_db=float(np.mean([s for s, _ in scores])), worst=worst[1])

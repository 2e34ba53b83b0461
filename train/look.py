"""The look measure: does the output look like the style's references, and not like the photo?

No training loss uses it, so a network cannot learn it by heart. Each image is reduced to eight
normalised histograms (colour and stroke statistics at three scales), and two images are as far
apart as the mean Hellinger distance of their histograms. The figures that judged earlier runs
(PSNR to a teacher, edge SSIM to the input, warping error) all reward doing nothing; these do not:
the identity scores a style gain of 0 and recognisability at chance, and a palette-only recolour
(`reinhard`) fails too, because it leaves every stroke histogram as the photo's.

Images are RGB uint8 (H, W, 3) arrays throughout.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SHORT_SIDE = 256
SCALES = (1, 2, 4)
# Names of the eight histograms, in descriptor order.
PARTS = ("L", "ab", *(f"orient/{s}" for s in SCALES), *(f"magnitude/{s}" for s in SCALES))


def _resize_short(rgb: np.ndarray, short: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _normalised(hist: np.ndarray) -> np.ndarray:
    hist = hist.astype(np.float64).ravel()
    total = hist.sum()
    return hist / total if total > 0 else np.full_like(hist, 1.0 / hist.size)


def descriptor(rgb: np.ndarray) -> list[np.ndarray]:
    """The eight normalised histograms of an image (see PARTS)."""
    rgb = _resize_short(np.ascontiguousarray(rgb[..., :3]), SHORT_SIDE)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)  # OpenCV's 8-bit Lab: L, a, b all in 0..255
    parts = [_normalised(np.histogram(lab[..., 0], bins=16, range=(0, 256))[0]),
             _normalised(np.histogram2d(lab[..., 1].ravel(), lab[..., 2].ravel(), bins=12,
                                        range=((64, 192), (64, 192)))[0])]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    orient, magnitude = [], []
    for s in SCALES:
        g = grey if s == 1 else cv2.resize(grey, (max(1, grey.shape[1] // s), max(1, grey.shape[0] // s)),
                                           interpolation=cv2.INTER_AREA)
        gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.hypot(gx, gy)
        angle = np.mod(np.arctan2(gy, gx), np.pi)
        orient.append(_normalised(np.histogram(angle, bins=12, range=(0, np.pi), weights=mag)[0]))
        # Clipped into the last bin, so hard black-on-white edges count instead of falling off the range.
        logm = np.minimum(np.log1p(20.0 * mag), 3.5 - 1e-6)
        magnitude.append(_normalised(np.histogram(logm, bins=12, range=(0, 3.5))[0]))
    return parts + orient + magnitude


def mean_descriptor(descs: Sequence[list[np.ndarray]]) -> list[np.ndarray]:
    """A fused style's descriptor: each histogram averaged over its pictures."""
    return [np.mean([d[i] for d in descs], axis=0) for i in range(len(PARTS))]


def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean Hellinger distance over the eight histograms, in [0, 1]."""
    return float(np.mean([np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(p * q)))) for p, q in zip(a, b)]))


def reference_descriptor(paths: Sequence[str | Path]) -> list[np.ndarray]:
    return mean_descriptor([descriptor(np.asarray(Image.open(p).convert("RGB"))) for p in paths])


def reinhard(rgb: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Palette-only recolour (Reinhard et al. 2001): the photo's Lab mean/std moved to the reference's.
    The do-nothing baseline with a palette: the look measure must fail it."""
    src = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    ref = cv2.cvtColor(_resize_short(reference, SHORT_SIDE), cv2.COLOR_RGB2LAB).astype(np.float32)
    mu_s, sd_s = src.reshape(-1, 3).mean(0), src.reshape(-1, 3).std(0) + 1e-6
    mu_r, sd_r = ref.reshape(-1, 3).mean(0), ref.reshape(-1, 3).std(0)
    out = (src - mu_s) / sd_s * sd_r + mu_r
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


@dataclass(frozen=True)
class LookScores:
    """Per style: style gain (1 - d(out, ref) / d(in, ref), mean over photos) and top-1 hits."""

    styles: tuple[str, ...]
    gain: dict[str, float]
    hits: dict[str, float]  # fraction of photos whose output is nearest to its own style's references

    @property
    def top1(self) -> float:
        return float(np.mean(list(self.hits.values())))

    @property
    def mean_gain(self) -> float:
        return float(np.mean(list(self.gain.values())))

    @property
    def min_gain(self) -> float:
        return min(self.gain.values())

    def passes(self, top1: float = 0.75, mean_gain: float = 0.5, min_gain: float = 0.25) -> bool:
        """The look issue's bar: recognisable, clearly styled on average, and no style left weak."""
        return self.top1 >= top1 and self.mean_gain >= mean_gain and self.min_gain >= min_gain


# (photo index, style index) -> RGB uint8 output of that photo in that style
Render = Callable[[int, int], np.ndarray]


def score(photos: Sequence[np.ndarray], refs: Sequence[list[np.ndarray]], styles: Sequence[str],
          render: Render) -> LookScores:
    """Render every photo in every style, then score recognisability and gain against `refs` (one per style)."""
    if len(refs) != len(styles):
        raise ValueError(f"{len(styles)} styles but {len(refs)} reference descriptors")
    inputs = [descriptor(p) for p in photos]
    gains: dict[str, list[float]] = {s: [] for s in styles}
    hits: dict[str, list[float]] = {s: [] for s in styles}
    for i, d_in in enumerate(inputs):
        for j, name in enumerate(styles):
            d_out = descriptor(render(i, j))
            to_refs = [distance(d_out, r) for r in refs]
            hits[name].append(float(int(np.argmin(to_refs)) == j))
            base = distance(d_in, refs[j])
            gains[name].append(1.0 - to_refs[j] / base if base > 0 else 0.0)
    return LookScores(tuple(styles), {s: float(np.mean(v)) for s, v in gains.items()},
                      {s: float(np.mean(v)) for s, v in hits.items()})


DETECTOR = "haarcascade_frontalface_default.xml"  # the face check
# A second stock cascade, trained apart from the first: the look's face term trains against DETECTOR
# (face_cascade.py), so faces kept are also counted by one it never saw.
HELD_OUT_DETECTOR = "haarcascade_frontalface_alt2.xml"
_CASCADES: dict[str, cv2.CascadeClassifier] = {}


def face_boxes(rgb: np.ndarray, cascade: str = DETECTOR) -> list[tuple[int, int, int, int]]:
    """The (x, y, w, h) boxes of the frontal faces one of OpenCV's stock Haar cascades finds."""
    if cascade not in _CASCADES:
        _CASCADES[cascade] = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / cascade))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = _CASCADES[cascade].detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    return [tuple(int(v) for v in b) for b in found]


def faces(rgb: np.ndarray, cascade: str = DETECTOR) -> int:
    """How many frontal faces one of OpenCV's stock Haar cascades finds."""
    return len(face_boxes(rgb, cascade))


def face_rate(portraits: Sequence[np.ndarray], outputs: Sequence[np.ndarray], cascade: str = DETECTOR) -> float:
    """Of the portraits whose input shows a face, the fraction whose output still does."""
    kept = [faces(o, cascade) > 0 for p, o in zip(portraits, outputs) if faces(p, cascade) > 0]
    return float(np.mean(kept)) if kept else float("nan")


def static_change(frames: Sequence[np.ndarray]) -> float:
    """Mean absolute change per frame, levels of 255: on a static camera, what the viewer sees crawl."""
    diffs = [np.abs(b.astype(np.float32) - a.astype(np.float32)).mean() for a, b in itertools.pairwise(frames)]
    return float(np.mean(diffs))


def noisy_still(rgb: np.ndarray, count: int, sigma: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """A static camera: one frame with fresh sensor noise (sigma in levels of 255) on each of `count` frames."""
    rng = np.random.default_rng(seed)
    return [np.clip(rgb.astype(np.float32) + rng.normal(0.0, sigma, rgb.shape), 0, 255).astype(np.uint8)
            for _ in range(count)]

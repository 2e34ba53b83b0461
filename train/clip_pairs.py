"""`python -m train clip-pairs`: the real-motion pairs bundled for the style fit (engines/temporal.py).

A fitted style is held to the bank's steadiness, and the bank learned it from a temporal term on real
clips (train/perceptual.py --clip-weight). The server's fit may not read the shared data or import
train/, so a few pairs travel with the package: two consecutive frames of the permissive training
clips (never the held-out one) at the scale the warping error is measured at (short side 256), the DIS
flow between them and the forward-backward occlusion mask, cropped where the most valid motion is.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from engines.temporal import CLIP_PAIRS
from train.data import SHARED_DATA
from train.flow import flow, occlusion_mask
from train.teacher_data import clip_sequences

SHORT_SIDE = 256  # the warping error's scale (train/style_acceptance.py clip_short)
CROP = 128  # the fit's crop size
PER_SEQUENCE = 2
CANDIDATES = 8  # frame pairs tried per sequence


def _best_window(frame: np.ndarray, fwd: np.ndarray, mask: np.ndarray, crop: int,
                 stride: int = 8) -> tuple[int, int, float]:
    """Top-left corner of the crop with the most valid motion of textured content: masked flow
    magnitude (capped) times the frame's edge strength. On a bare wall DIS reports motion that is
    not there, and a flat crop teaches nothing about strokes that crawl."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    edges = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    motion = np.minimum(np.linalg.norm(fwd, axis=-1), 8.0) * mask * np.minimum(edges, 0.5)
    h, w = mask.shape
    best = (0, 0, -1.0)
    for y in range(0, h - crop + 1, stride):
        for x in range(0, w - crop + 1, stride):
            if mask[y : y + crop, x : x + crop].mean() < 0.7:  # mostly occluded or at motion edges: little to learn
                continue
            score = float(motion[y : y + crop, x : x + crop].mean())
            if score > best[2]:
                best = (y, x, score)
    return best


def build_clip_pairs(data: Path = SHARED_DATA, out: Path = CLIP_PAIRS, seed: int = 0) -> dict[str, float]:
    """Write the pairs to `out` (npz: frames (N,2,C,C,3) uint8, flow (N,C,C,2) float16, mask (N,C,C) bool)."""
    rng = random.Random(seed)
    seqs = clip_sequences(data, short_side=SHORT_SIDE)
    if not seqs:
        raise FileNotFoundError(f"no permissive clips under {data}; set STYLIZER_DATA")
    frames, flows, masks, motion = [], [], [], []
    for seq in seqs:
        picks = []
        for t in sorted(rng.sample(range(1, len(seq)), min(CANDIDATES, len(seq) - 1))):
            prev, nxt = np.asarray(seq[t - 1].convert("RGB")), np.asarray(seq[t].convert("RGB"))
            fwd, bwd = flow(nxt, prev), flow(prev, nxt)
            mask = occlusion_mask(fwd, bwd)
            y, x, score = _best_window(nxt, fwd, mask, CROP)
            if score >= 0:
                win = (slice(y, y + CROP), slice(x, x + CROP))
                picks.append((score, prev[win], nxt[win], fwd[win], mask[win]))
        for score, prev, nxt, fwd, mask in sorted(picks, key=lambda p: -p[0])[:PER_SEQUENCE]:
            frames.append(np.stack([prev, nxt]))
            flows.append(fwd.astype(np.float16))
            masks.append(mask > 0.5)
            motion.append(score)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, frames=np.stack(frames), flow=np.stack(flows), mask=np.stack(masks))
    return {"pairs": len(frames), "mean_score": float(np.mean(motion)), "bytes": out.stat().st_size}

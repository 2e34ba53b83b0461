"""OpenCV's stock frontal-face Haar cascade as a differentiable score on a face window.

The look keeps faces where the face term holds the coarse luma pattern, but at full strength the line styles
still redraw a face into marks the cascade no longer reads as one (a face lost in 7 of 12 lineart portraits).
The cascade is a linear map of a 24x24 window followed by stumps, so it can be read as a loss directly: each
stump's step is softened to a sigmoid, and every stage's sum is held above its threshold by a margin. What it
asks of the image is the cascade's own coarse contrasts (eyes darker than cheeks, a bright nose bridge), the
light and dark a viewer reads a face by too; the evaluation checks the result with a second cascade (alt2) as
well, so that a pattern fitted to this one cascade alone would show.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import torch
import torch.nn.functional as F

from train.teacher_losses import luma

WINDOW = 24
FACE_WINDOWS = 8  # the box and 7 neighbours: minNeighbors=5 asks for a cluster of passing windows


class SoftCascade:
    """The stages of a Haar cascade (OpenCV's XML format, stumps, untilted features) on 24x24 windows."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        root = ET.parse(path).getroot().find("cascade")
        if root is None or root.findtext("featureType", "").strip() != "HAAR":
            raise ValueError(f"{path}: not a Haar cascade in OpenCV's format")
        size = (int(root.findtext("height", "0")), int(root.findtext("width", "0")))
        if size != (WINDOW, WINDOW):
            raise ValueError(f"{path}: a {size} window; this reads {WINDOW}x{WINDOW} cascades only")
        rows = []
        for feat in root.find("features"):
            if (feat.findtext("tilted") or "0").strip() != "0":
                raise ValueError(f"{path}: tilted features are not supported")
            w = torch.zeros(WINDOW, WINDOW)
            for rect in feat.find("rects"):
                x, y, rw, rh, weight = rect.text.split()
                w[int(y) : int(y) + int(rh), int(x) : int(x) + int(rw)] += float(weight)
            rows.append(w.flatten())
        self.features = torch.stack(rows)  # (F, 576): each feature is a weighted sum of the window's pixels
        feat_idx, thresholds, left, right, stage_of, stage_thr = [], [], [], [], [], []
        for s, stage in enumerate(root.find("stages")):
            stage_thr.append(float(stage.findtext("stageThreshold")))
            for weak in stage.find("weakClassifiers"):
                nodes = weak.findtext("internalNodes").split()
                if len(nodes) != 4:
                    raise ValueError(f"{path}: only stumps (one split per weak classifier) are supported")
                leaves = weak.findtext("leafValues").split()
                feat_idx.append(int(nodes[2]))
                thresholds.append(float(nodes[3]))
                left.append(float(leaves[0]))
                right.append(float(leaves[1]))
                stage_of.append(s)
        self.feat_idx = torch.tensor(feat_idx)
        self.thresholds = torch.tensor(thresholds)
        self.left, self.right = torch.tensor(left), torch.tensor(right)
        self.stage_of = torch.tensor(stage_of)
        self.stage_thresholds = torch.tensor(stage_thr)

    def stage_sums(self, windows: torch.Tensor, softness: float = 0.0) -> torch.Tensor:
        """(N, 1, 24, 24) grey windows in [0, 255] -> (N, stages) sums of the stumps' leaf values.

        As OpenCV does, each feature is divided by the window's spread (over its inner 22x22) times that
        area, so the cascade sees contrast, not brightness. `softness` 0 is the cascade's own steps; above
        0 each step is a sigmoid of that width in the normalised feature's units."""
        inner = windows[:, 0, 1:-1, 1:-1].flatten(1)
        norm = inner.shape[1] * inner.std(dim=1, unbiased=False).clamp_min(1e-3)
        values = (windows.flatten(1) @ self.features.T)[:, self.feat_idx] / norm[:, None]
        if softness > 0:
            right_share = torch.sigmoid((values - self.thresholds) / softness)
        else:
            right_share = (values >= self.thresholds).to(values.dtype)
        leaves = self.left + (self.right - self.left) * right_share
        sums = windows.new_zeros(windows.shape[0], len(self.stage_thresholds))
        return sums.index_add(1, self.stage_of, leaves)

    def passes(self, windows: torch.Tensor) -> torch.Tensor:
        """(N,) whether each window passes every stage: the cascade's own verdict on one window."""
        return (self.stage_sums(windows) >= self.stage_thresholds).all(dim=1)

    def loss(self, out: torch.Tensor, src: torch.Tensor, softness: float = 0.005, margin: float = 2.0) -> torch.Tensor:
        """How far the output windows' stage sums fall below the same windows' in the input, each stage's floor
        capped at its threshold plus `margin`, in leaf units: as sure of a face as the photo is, no surer.

        On P16's outputs of the twelve look portraits this read 7 on the faces the real detector still found
        and 34 on those it lost; the stage thresholds alone, without the photo's floor, did not part them."""
        with torch.no_grad():
            floor = torch.minimum(self.stage_sums(src, softness), self.stage_thresholds + margin)
        return F.relu(floor - self.stage_sums(out, softness)).sum(dim=1).mean()

def face_windows(images: torch.Tensor, box: tuple[int, int, int, int], count: int,
                 rng: random.Random) -> torch.Tensor:
    """(N, 3, H, W) images -> (N * count, 1, 24, 24) grey windows in [0, 255], image-major, around the (x, y, w, h)
    box: the box itself, then shifted by up to 8% of its side and scaled by 0.9-1.1, standing for the
    neighbouring windows the detector needs (five at minNeighbors=5) before it reports a face. Every image
    gets the same windows, so an output's are read where its input's are."""
    grey = luma(images) * 255.0
    x, y, w, h = box
    height, width = grey.shape[-2:]
    wins = []
    for i in range(count):
        side = max(w, h) * (1.0 if i == 0 else rng.uniform(0.9, 1.1))
        cx = x + w / 2 + (0 if i == 0 else rng.uniform(-0.08, 0.08) * w)
        cy = y + h / 2 + (0 if i == 0 else rng.uniform(-0.08, 0.08) * h)
        s = int(round(min(side, width, height)))
        x0 = int(round(min(max(cx - s / 2, 0), width - s)))
        y0 = int(round(min(max(cy - s / 2, 0), height - s)))
        wins.append(F.interpolate(grey[:, :, y0 : y0 + s, x0 : x0 + s], size=(WINDOW, WINDOW), mode="area"))
    return torch.stack(wins, dim=1).flatten(0, 1)

def mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The (x, y, w, h) box of a (1, H, W) 0/1 mask, or None where it is empty or cut to a sliver."""
    ys, xs = torch.nonzero(mask[0] > 0.5, as_tuple=True)
    if len(ys) == 0:
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    if min(x1 - x0, y1 - y0) < WINDOW or max(x1 - x0, y1 - y0) > 1.5 * min(x1 - x0, y1 - y0):
        return None  # a face cut by the crop's edge: no window of the detector's shape holds it
    return x0, y0, x1 - x0, y1 - y0

"""The temporal term on real motion: warping, the occlusion-masked loss, and the bundled clip pairs.

The bank is trained with it (train/perceptual.py, on the shared clips) and a user's style is fitted
with it (engines/style_fit.py, on the pairs bundled here), so it lives in engines/: serve-time code
may not import train/. One flow convention throughout, OpenCV's: a flow F between frames a and b is
(N, 2, H, W) in pixels, channel 0 = x, and a(p) ~ b(p + F(p)); warp(b, F) lines b up with a.

The pairs (engines/calibration/clip_pairs.npz, built by `python -m train clip-pairs` from the
permissive training clips, never the held-out one) hold two consecutive frames, the DIS flow from the
second to the first and its forward-backward occlusion mask, as the warping error measures them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CLIP_PAIRS = Path(__file__).resolve().parent / "calibration" / "clip_pairs.npz"


def warp(img: torch.Tensor, fl: torch.Tensor) -> torch.Tensor:
    """Differentiable img(p + F(p)): img (N, C, H, W), flow (N, 2, H, W) in pixels -> (N, C, H, W).

    align_corners=True puts sample -1/+1 on the centres of the outer pixels, so pixel coordinates
    map linearly and border padding clamps exactly as cv2's BORDER_REPLICATE does.
    The sampling grid is always float32: under bf16 autocast a bf16 grid would round pixel positions
    past 256 to whole pixels and the temporal losses would compare misaligned frames.
    """
    h, w = img.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=img.device),
                            torch.arange(w, dtype=torch.float32, device=img.device), indexing="ij")
    fl = fl.float()
    gx = (xs + fl[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + fl[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    out = F.grid_sample(img.float(), torch.stack([gx, gy], dim=-1), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.to(img.dtype)


def inside_mask(flow: torch.Tensor) -> torch.Tensor:
    """(N,1,H,W) 1 where p + flow(p) lands inside the image (a warp there is defined, not padded)."""
    h, w = flow.shape[-2:]
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    tx, ty = xs + flow[:, 0], ys + flow[:, 1]
    ok = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return ok.unsqueeze(1).to(flow.dtype)


def temporal_loss(out_next: torch.Tensor, out_prev: torch.Tensor, flow: torch.Tensor,
                  mask: torch.Tensor | None = None, squared: bool = False) -> torch.Tensor:
    """Masked L1 (or, `squared`, the mean squared error, as Lai et al.'s warping error) between out_next and
    out_prev warped by `flow` (next(p) ~ prev(p + flow(p))).

    With a synthetic flow this is stylize(warp(x)) vs warp(stylize(x)); with an estimated
    flow on a real clip, `mask` also removes occlusions and motion boundaries.
    """
    valid = inside_mask(flow) if mask is None else mask * inside_mask(flow)
    diff = (out_next - warp(out_prev, flow)).abs()
    diff = (diff.square() if squared else diff) * valid
    return diff.sum() / (valid.sum() * out_next.shape[1]).clamp_min(1.0)


@dataclass(frozen=True)
class ClipPair:
    """frames (2, 3, C, C) in [0, 1], t-1 then t; flow (1, 2, C, C) = flow(I_t, I_t-1); mask (1, 1, C, C)."""

    frames: torch.Tensor
    flow: torch.Tensor
    mask: torch.Tensor


class ClipPairs:
    """The bundled pairs, each drawn whole or mirrored: `sample` names the draw, so a caller can keep
    what it computed for one (the fit's per-pair floor)."""

    def __init__(self, path: Path = CLIP_PAIRS) -> None:
        with np.load(path) as z:
            self.frames = torch.from_numpy(z["frames"].astype(np.float32) / 255.0).permute(0, 1, 4, 2, 3)  # N,2,3,H,W
            self.flow = torch.from_numpy(z["flow"].astype(np.float32)).permute(0, 3, 1, 2)  # N,2,H,W
            self.mask = torch.from_numpy(z["mask"].astype(np.float32))[:, None]  # N,1,H,W

    def __len__(self) -> int:
        return self.frames.shape[0]

    def sample(self, rng: random.Random) -> tuple[tuple[int, bool], ClipPair]:
        """A random pair and its key (index, mirrored)."""
        key = (rng.randrange(len(self)), rng.random() < 0.5)
        return key, self.pair(*key)

    def pair(self, i: int, mirrored: bool = False) -> ClipPair:
        frames, fl, mask = self.frames[i], self.flow[i], self.mask[i]
        if mirrored:  # the x component of the motion changes sign
            frames, fl, mask = frames.flip(-1), fl.flip(-1) * torch.tensor([-1.0, 1.0])[:, None, None], mask.flip(-1)
        return ClipPair(frames.contiguous(), fl[None].contiguous(), mask[None].contiguous())

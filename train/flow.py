"""Optical flow, warping and occlusion masks in NumPy/OpenCV, and random synthetic flows in torch.

The differentiable torch warp lives with the temporal loss in engines/temporal.py (the style fit uses it
at serve time). One convention throughout, OpenCV's: a flow F between frames a and b is (H, W, 2) (or (N, 2, H, W)
in torch) in pixels, channel 0 = x, and a(p) ≈ b(p + F(p)). Backward warping b by F therefore
lines b up with a: warp(b, F)(p) = b(p + F(p)).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow (MEDIUM preset) between RGB uint8 frames: (H, W, 2) float32 with a(p) ≈ b(p + F(p))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)


def _sample_grid(h: int, w: int, fl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs + fl[..., 0], ys + fl[..., 1]


def warp_np(img: np.ndarray, fl: np.ndarray) -> np.ndarray:
    """img(p + F(p)), bilinear, borders replicated (what `warp` does): (H, W[, C]) -> same shape and dtype."""
    mx, my = _sample_grid(img.shape[0], img.shape[1], fl)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """(H, W) float32, 1 = valid, for the frame that `fwd` starts from (Ruder et al. 2016, GCPR).

    fwd: flow of this frame towards the other one, the flow that warps the other frame onto this one
         (to warp frame t-1 onto t: fwd = flow(I_t, I_{t-1}), bwd = flow(I_{t-1}, I_t)).
    bwd: the other frame's flow back to this one.
    Invalid are pixels that fail the forward-backward check (the flow there does not return to
    where it started: occluded or wrong), motion boundaries, and pixels whose match lies outside
    the other frame (border replication would stand in for content that was never seen).
    """
    h, w = fwd.shape[:2]
    back = warp_np(bwd, fwd)  # bwd at p + fwd(p): ≈ -fwd(p) where the two agree
    inconsistent = ((fwd + back) ** 2).sum(-1) > 0.01 * ((fwd**2).sum(-1) + (back**2).sum(-1)) + 0.5
    du_y, du_x = np.gradient(fwd[..., 0])
    dv_y, dv_x = np.gradient(fwd[..., 1])
    boundary = du_x**2 + du_y**2 + dv_x**2 + dv_y**2 > 0.01 * (fwd**2).sum(-1) + 0.002
    mx, my = _sample_grid(h, w, fwd)
    outside = (mx < 0) | (mx > w - 1) | (my < 0) | (my > h - 1)
    return (~(inconsistent | boundary | outside)).astype(np.float32)


def _uniform(n: int, limit: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * limit


def random_affine_flow(n: int, h: int, w: int, generator: torch.Generator, max_shift: float = 8.0,
                       max_rot_deg: float = 3.0, max_scale: float = 0.04) -> torch.Tensor:
    """(N, 2, H, W) flows of random similarity transforms about the image centre: a shift, a small
    rotation and zoom, like a hand-held camera. Exact by construction, so warp(x, F) is a second
    frame whose flow back to x is exactly F."""
    shift = torch.stack([_uniform(n, max_shift, generator), _uniform(n, max_shift, generator)], dim=1)
    theta = _uniform(n, math.radians(max_rot_deg), generator)
    scale = 1.0 + _uniform(n, max_scale, generator)
    a = torch.stack([torch.stack([scale * theta.cos(), -scale * theta.sin()], -1),
                     torch.stack([scale * theta.sin(), scale * theta.cos()], -1)], dim=1)  # (N, 2, 2)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    p = torch.stack([xs - (w - 1) / 2, ys - (h - 1) / 2])  # (2, H, W), centred
    moved = torch.einsum("nij,jhw->nihw", a, p) + shift[:, :, None, None]
    return moved - p


def smooth_random_flow(n: int, h: int, w: int, generator: torch.Generator, magnitude: float = 4.0,
                       grid: int = 4) -> torch.Tensor:
    """(N, 2, H, W) smooth non-rigid flows: a grid x grid field of uniform [-magnitude, magnitude]
    vectors, bicubic-upsampled (which may overshoot the magnitude slightly between nodes)."""
    coarse = (torch.rand(n, 2, grid, grid, generator=generator) * 2.0 - 1.0) * magnitude
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)

"""Evaluation metrics: temporal stability, structure kept, style reached, fidelity.

Images are torch (N, 3, H, W) or (3, H, W) floats in [0, 1]; video clips are sequences of RGB
uint8 (H, W, 3) frames, as decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engines.features import ExpansionFeatures
from engines.style_losses import StyleStats, style_loss
from train.flow import flow, occlusion_mask, warp_np

Flows = list[tuple[np.ndarray, np.ndarray]]


def clip_flows(inputs: Sequence[np.ndarray]) -> Flows:
    """For each frame t >= 1: (flow(I_t, I_{t-1}), valid mask of frame t). Costly; share it across models."""
    out = []
    for t in tqdm(range(1, len(inputs)), desc="optical flow", dynamic_ncols=True, leave=False):
        fwd, bwd = flow(inputs[t], inputs[t - 1]), flow(inputs[t - 1], inputs[t])
        out.append((fwd, occlusion_mask(fwd, bwd)))
    return out


def warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], flows: Flows | None = None) -> float:
    """Lai et al. 2018 (ECCV): mean over t of sum M (O_t - warp(O_{t-1}))^2 / sum M, pixels in [0, 1].

    Flow and mask come from the input frames, so a stylizer is judged against the motion that is
    really there. As in the authors' evaluation code the mask is counted per channel, i.e. this is
    the mean squared error over valid pixels and RGB channels. outputs=inputs gives the floor
    (what flow errors and lighting changes alone cost).
    """
    if len(inputs) != len(outputs) or len(inputs) < 2:
        raise ValueError(f"need two or more frames and as many outputs as inputs, got {len(inputs)}, {len(outputs)}")
    flows = flows if flows is not None else clip_flows(inputs)
    errors = []
    for t, (fwd, mask) in enumerate(flows, start=1):
        cur = outputs[t].astype(np.float32) / 255.0
        prev = warp_np(outputs[t - 1].astype(np.float32) / 255.0, fwd)
        errors.append(float((mask[..., None] * (cur - prev) ** 2).sum() / max(3.0 * mask.sum(), 1.0)))
    return float(np.mean(errors))


def _batch(x: torch.Tensor) -> torch.Tensor:
    return x[None] if x.dim() == 3 else x


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for [0, 1] images, averaged over the batch (inf if identical)."""
    mse = (_batch(a).float() - _batch(b).float()).pow(2).flatten(1).mean(1)
    return float((10.0 * torch.log10(1.0 / mse)).mean())


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, size, size)


def ssim_per_sample(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """SSIM (Wang et al. 2004) for [0, 1] images, (N,): 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
    K2 = 0.03, per channel over the valid window positions, averaged over channels and pixels. Differentiable
    (the teacher's edge term trains on it)."""
    # float64 by default: var = E[x^2] - E[x]^2 cancels badly in float32 where the image is nearly flat.
    a, b = _batch(a).to(dtype), _batch(b).to(dtype)
    c = a.shape[1]
    win = _gaussian_window().to(a).expand(c, 1, -1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, win, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """`ssim_per_sample` averaged over the batch, in float64."""
    return float(ssim_per_sample(a, b).mean())


_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def edge_map(img: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Sobel gradient magnitude of the BT.601 luma: (N, 3, H, W) -> (N, 1, H, W) in [0, 1].

    Divided by 4 so a full-range step between neighbours reads 1 (clipped there), which keeps the
    map on the [0, 1] scale SSIM's constants assume. A training loss passes a small `eps` under the square
    root, whose gradient is infinite at 0 (a flat patch).
    """
    x = _batch(img).float()
    luma = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    luma = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    kx = _SOBEL_X.to(x.device)[None, None]
    gx, gy = F.conv2d(luma, kx), F.conv2d(luma, kx.transpose(2, 3))
    return ((gx**2 + gy**2 + eps).sqrt() / 4.0).clamp(max=1.0)


def edge_ssim(content: torch.Tensor, output: torch.Tensor) -> float:
    """How much of the content's structure the output keeps: SSIM between their edge maps (1 = all of it)."""
    return ssim(edge_map(content), edge_map(output))


@torch.no_grad()
def style_distances(features: ExpansionFeatures, outputs: torch.Tensor, target: StyleStats) -> list[float]:
    """The training style loss with nothing left out (no margin, one tile, every tap of `features`) for each
    output against its own row of `target` (StyleStats.mix(weights)): per-tap mean/std distance normalised
    by the target's size, averaged over taps; 0 iff the statistics match. A single output is measured
    against every row (one photo, several styles)."""
    feats = features(_batch(outputs))
    out = []
    for i in range(target.rgb_mu.shape[0]):
        j = i if feats[features.taps[0]].shape[0] > 1 else 0
        out.append(float(style_loss({k: f[j : j + 1] for k, f in feats.items()}, target.row(i), taps=features.taps)))
    return out


def style_distance(features: ExpansionFeatures, outputs: torch.Tensor, target: StyleStats) -> float:
    """Mean of `style_distances`: each output is normalised by its own target, so mixed targets do not
    share a normalisation as they would in one style_loss call over the batch."""
    return float(np.mean(style_distances(features, outputs, target)))

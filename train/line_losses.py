"""Where a line style may put its ink: on the photo's edges.

The style terms give `lineart` and `cartoon` the references' share of black, but say nothing about where it
goes, and the network laid it as masses (hair, shadows, a dark coat). This term charges dark output away from
the input's edges, so the ink the style terms ask for is drawn as lines along contours and outlines instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


def edge_map(x: torch.Tensor, gain: float = 4.0) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 1, H, W) in [0, 1]: 1 on the photo's edges (Sobel on a blurred luma,
    relative to each image's strongest edges, widened by a 3x3 max so a line may sit beside its edge)."""
    grey = sum(c * x[:, i : i + 1] for i, c in enumerate(LUMA))
    grey = F.avg_pool2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
    k = torch.stack([kx, kx.t()])[:, None]
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    mag = mag / (mag.amax(dim=(2, 3), keepdim=True) + 1e-6)
    return F.max_pool2d((mag * gain).clamp(0.0, 1.0), 3, stride=1, padding=1)


def ink_off_edges(y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, dark: float = 0.35) -> torch.Tensor:
    """Mean darkness of y below `dark` luma where x has no edge, per sample weighted by `weight` (N,) (the line
    styles' share of each sample's blend, times its strength); 0 when no sample is a line style."""
    luma = sum(c * y[:, i : i + 1] for i, c in enumerate(LUMA))
    ink = F.relu(dark - luma) / dark
    with torch.no_grad():
        away = 1.0 - edge_map(x)
    per_sample = (ink * away).mean(dim=(1, 2, 3))
    total = weight.sum()
    return (per_sample * weight).sum() / total if float(total) > 0 else per_sample.sum() * 0.0


def marks_off_edges(y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean colour gradient of y (finite differences, summed over RGB) where x has no edge, per sample weighted
    by `weight` (N,): flat fills between the photo's contours. The style terms ask every tile for the
    references' share of marks, and on a bare wall the line styles met it with blobs and worms of ink."""
    dx = (y[:, :, :, 1:] - y[:, :, :, :-1]).abs().sum(1, keepdim=True)[:, :, :-1, :]
    dy = (y[:, :, 1:, :] - y[:, :, :-1, :]).abs().sum(1, keepdim=True)[:, :, :, :-1]
    with torch.no_grad():
        away = (1.0 - edge_map(x))[:, :, :-1, :-1]
    per_sample = ((dx + dy) * away).mean(dim=(1, 2, 3))
    total = weight.sum()
    return (per_sample * weight).sum() / total if float(total) > 0 else per_sample.sum() * 0.0

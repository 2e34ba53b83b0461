"""The teacher's non-adversarial losses: strength-aware style statistics and the gradient domain.

Style, content, colour and TV come from engines.style_losses (the recipe measured in
shared/STYLE_LOSS_NOTES.md), and the temporal loss, stylize(warp(x)) ~ warp(stylize(x)), from
engines.temporal (the style fit shares it). What is added here:
- the expression loss: at strength s the target statistics are (1-s)*content + s*style mixture,
  per sample, so s = 1 is the style loss and s < 1 teaches the strength knob;
- the gradient-domain loss, which keeps structure, faces and text readable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engines.features import mean_std
from engines.style_losses import StyleStats, crop_border, grid_tiles
from train.metrics import edge_map, ssim_per_sample

_LUMA = (0.299, 0.587, 0.114)


def expression_loss(feats: dict[int, torch.Tensor], content_feats: dict[int, torch.Tensor], target: StyleStats,
                    strength: torch.Tensor, taps: tuple[int, ...], margin: float = 0.0, grid: int = 1,
                    relative: bool = False) -> torch.Tensor:
    """Per-sample (N,) mean/std distance to (1-s)*content + s*style, normalised per tap as the style loss.

    The content part is taken region by region from the content's own features, so the identity
    scores exactly 0 at s = 0. The style part is the mixture's global statistics in every tile; with
    `relative`, it is instead the tile's content statistics under the global content->style map
    (AdaIN applied to the tile): a flat tile is asked for the style's contrast in proportion to its own,
    so a flat wall or a cheek is not asked for a whole painting's strokes. At grid 1 the two agree.
    """
    s = strength.view(-1, 1)
    total = feats[taps[0]].new_zeros(feats[taps[0]].shape[0])
    for k in taps:
        tm, ts = target.mu[k], target.sigma[k]  # (N, C)
        norm = (tm.pow(2).mean(1) + ts.pow(2).mean(1)).clamp_min(1e-8)
        out_regions = grid_tiles(crop_border(feats[k], margin), grid)
        content_regions = grid_tiles(crop_border(content_feats[k], margin), grid)
        if relative:
            gmu, gsigma = mean_std(crop_border(content_feats[k], margin))
            gain = (ts / gsigma.clamp_min(1e-4)).clamp(max=10.0)  # a near-constant channel is not amplified 1e4x
        for region, content in zip(out_regions, content_regions):
            mu, sigma = mean_std(region)
            cmu, csigma = mean_std(content)
            smu, ssigma = (tm + (cmu - gmu) * gain, csigma * gain) if relative else (tm, ts)
            goal_mu, goal_sigma = (1 - s) * cmu + s * smu, (1 - s) * csigma + s * ssigma
            total = total + ((mu - goal_mu).pow(2).mean(1) + (sigma - goal_sigma).pow(2).mean(1)) / (norm * grid * grid)
    return total / len(taps)


def expression_colour_loss(image: torch.Tensor, content: torch.Tensor, target: StyleStats, strength: torch.Tensor,
                           margin: float = 0.0) -> torch.Tensor:
    """Per-sample (N,) image-space palette loss against (1-s)*content + s*style RGB statistics."""
    s = strength.view(-1, 1)
    mu, sigma = mean_std(crop_border(image, margin))
    cmu, csigma = mean_std(crop_border(content, margin))
    goal_mu, goal_sigma = (1 - s) * cmu + s * target.rgb_mu, (1 - s) * csigma + s * target.rgb_sigma
    return (mu - goal_mu).pow(2).mean(1) + (sigma - goal_sigma).pow(2).mean(1)


def _sobel(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kx = gray.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3) / 8.0
    g = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(g, kx), F.conv2d(g, kx.transpose(2, 3))


def luma(image: torch.Tensor) -> torch.Tensor:
    return (image * image.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def grey(image: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) -> its luminance repeated in 3 channels (what a colour-blind feature extractor sees)."""
    return luma(image).expand(-1, 3, -1, -1)


def gradient_loss(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Gradient-domain loss: the content's structure must survive; new brush texture is free.

    - luma gradients against the content's at quarter resolution, where faces, outlines and shading live
      and brush strokes (a few pixels) have averaged out;
    - soft edge maps at half resolution, one-sided: an edge of the content must stay an edge; a stroke where
      the content is flat is not an error.
    The first version compared gradients and both-sided edges at full resolution too: it charged every
    stroke as a lost edge, and the teacher only ever learned a palette (docs/training.md, run F).
    0 iff the output keeps every content edge and the coarse gradients match.
    """
    y, x = F.avg_pool2d(luma(output), 2), F.avg_pool2d(luma(content), 2)
    ey, ex = _soft_edges(y), _soft_edges(x)
    lost = F.relu(ex - ey).mean()
    y, x = F.avg_pool2d(y, 2), F.avg_pool2d(x, 2)
    gyx, gyy = _sobel(y)
    gxx, gxy = _sobel(x)
    return lost + (gyx - gxx).abs().mean() + (gyy - gxy).abs().mean()


def edge_ssim_loss(output: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """(N,) 1 - SSIM between the content's and the output's full-resolution edge maps: the eval's edge
    measure (train.metrics.edge_ssim) as a loss, 0 iff the edge maps match.

    `gradient_loss` leaves strokes on flat content free, which is what the eval charges most: on a flat
    wall any texture is all of the local edge structure, while along an outline or in foliage the same
    stroke changes little. Computed in float32 (the eval uses float64; the edge maps here are never flat
    enough for the difference to matter next to K2).
    """
    with torch.autocast(output.device.type, enabled=False):
        return 1.0 - ssim_per_sample(edge_map(content.float()), edge_map(output.float(), eps=1e-6),
                                     dtype=torch.float32)


def _soft_edges(img: torch.Tensor) -> torch.Tensor:
    """Saturated gradient magnitude: a strong stroke does not count more than an outline."""
    gx, gy = _sobel(img)
    return torch.tanh(20.0 * (gx.pow(2) + gy.pow(2) + 1e-8).sqrt())


def local_colour_loss(output: torch.Tensor, content: torch.Tensor, pool: int = 16) -> torch.Tensor:
    """Low-frequency colour changes that no global colour mapping explains: blobs, not palettes.

    Both images are block-averaged (pool x pool), the best per-image affine colour map from the
    content's blocks to the output's is fitted by least squares, and what it leaves over is the
    loss. A new palette (a global map) and brush texture (finer than a block) cost nothing; a
    bright patch in one place does. 0 iff the output's block colours are an affine map of the content's.
    """
    # float32 throughout: under CUDA bf16 autocast the solve would meet a bf16 right-hand side.
    o = F.avg_pool2d(output.float(), pool).flatten(2).transpose(1, 2)  # (N, B, 3)
    c = F.avg_pool2d(content.float(), pool).flatten(2).transpose(1, 2)
    a = torch.cat([c, torch.ones_like(c[..., :1])], dim=2)  # (N, B, 4)
    # Ridge-regularised normal equations: stable on flat crops, where the content's blocks barely vary.
    with torch.autocast(a.device.type, enabled=False):
        gram = a.transpose(1, 2) @ a + 1e-3 * torch.eye(4, device=a.device, dtype=a.dtype)
        m = torch.linalg.solve(gram, a.transpose(1, 2) @ o)  # (N, 4, 3)
        return (a @ m - o).pow(2).mean()

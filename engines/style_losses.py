"""Perceptual losses on EfficientNet-Lite0 expansion features (recipe in shared/STYLE_LOSS_NOTES.md).

They live in engines/ because a user's style is fitted at serve time (engines/style_fit.py) with the
same terms the bank was trained with (train/perceptual.py); torch is needed only when they are used."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engines.features import CONTENT_TAP, STYLE_TAPS, ExpansionFeatures, mean_std


@dataclass
class StyleStats:
    """Per-style feature statistics: tap -> (S, C) means and stds, plus RGB colour mean/std (S, 3)."""

    mu: dict[int, torch.Tensor]
    sigma: dict[int, torch.Tensor]
    rgb_mu: torch.Tensor
    rgb_sigma: torch.Tensor

    def mix(self, w: torch.Tensor) -> StyleStats:
        """Targets for a batch of weight vectors w (N, S): the weighted mixture of the references' statistics."""
        return StyleStats(
            mu={k: w @ v for k, v in self.mu.items()},
            sigma={k: w @ v for k, v in self.sigma.items()},
            rgb_mu=w @ self.rgb_mu,
            rgb_sigma=w @ self.rgb_sigma,
        )

    def to(self, device: torch.device | str) -> StyleStats:
        return StyleStats(mu={k: v.to(device) for k, v in self.mu.items()},
                          sigma={k: v.to(device) for k, v in self.sigma.items()},
                          rgb_mu=self.rgb_mu.to(device), rgb_sigma=self.rgb_sigma.to(device))

    def row(self, i: int) -> StyleStats:
        """Row i alone (one style or one mixture), batch dimension kept."""
        return StyleStats(mu={k: v[i : i + 1] for k, v in self.mu.items()},
                          sigma={k: v[i : i + 1] for k, v in self.sigma.items()},
                          rgb_mu=self.rgb_mu[i : i + 1], rgb_sigma=self.rgb_sigma[i : i + 1])


@torch.no_grad()
def style_stats(features: ExpansionFeatures, styles: list[torch.Tensor],
                grounds: list[float | None] | None = None) -> StyleStats:
    """Statistics of each style image (3, H, W); a fused style may be the mean of several references' stats.
    `grounds[i]`, where given, is the share of image i's white paper in its statistics (`ground_weights`)."""
    mus: dict[int, list[torch.Tensor]] = {k: [] for k in features.taps}
    sigmas: dict[int, list[torch.Tensor]] = {k: [] for k in features.taps}
    rgb_mu, rgb_sigma = [], []
    for i, img in enumerate(styles):
        weights = ground_weights(img, grounds[i] if grounds else None)
        feats = features(img[None])
        for k, f in feats.items():
            m, s = weighted_mean_std(f, weights)
            mus[k].append(m[0])
            sigmas[k].append(s[0])
        m, s = weighted_mean_std(img[None], weights)
        rgb_mu.append(m[0])
        rgb_sigma.append(s[0])
    return StyleStats(
        mu={k: torch.stack(v) for k, v in mus.items()},
        sigma={k: torch.stack(v) for k, v in sigmas.items()},
        rgb_mu=torch.stack(rgb_mu),
        rgb_sigma=torch.stack(rgb_sigma),
    )


def weighted_mean_std(f: torch.Tensor, weights: torch.Tensor | None,
                      eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """`mean_std` with per-pixel weights (H, W) at the picture's resolution, area-pooled to the map's."""
    if weights is None:
        return mean_std(f, eps)
    w = F.interpolate(weights[None, None], size=f.shape[-2:], mode="area").flatten(2)
    w = w / w.sum().clamp_min(1e-8)
    flat = f.flatten(2)
    mu = (flat * w).sum(2)
    var = ((flat - mu[..., None]).pow(2) * w).sum(2)
    return mu, (var + eps).sqrt()


def fused_style_stats(features: ExpansionFeatures, imgs: list[torch.Tensor],
                      weights: list[float] | None = None, ground: float | None = None) -> StyleStats:
    """One row: the statistics of several references' pooled features, as a weighted mixture (default equal):
    the mixture's mean, and its variance = mean variance + spread of means. One target, not an average of
    per-picture targets. `ground`: the share of each picture's white paper (`ground_weights`)."""
    r = style_stats(features, imgs, [ground] * len(imgs))
    w = r.rgb_mu.new_tensor(weights if weights is not None else [1.0] * len(imgs))
    w = (w / w.sum())[:, None]

    def pool(mu: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = (w * mu).sum(0)
        return m[None], (w * (sigma.pow(2) + (mu - m).pow(2))).sum(0).sqrt()[None]

    pooled = {k: pool(r.mu[k], r.sigma[k]) for k in r.mu}
    rgb_mu, rgb_sigma = pool(r.rgb_mu, r.rgb_sigma)
    return StyleStats(mu={k: m for k, (m, _) in pooled.items()}, sigma={k: s for k, (_, s) in pooled.items()},
                      rgb_mu=rgb_mu, rgb_sigma=rgb_sigma)


def pooled_style_stats(features: ExpansionFeatures, refs: list[list[torch.Tensor]],
                       grounds: tuple[float | None, ...] = ()) -> StyleStats:
    """One row per style; a style with several references gets their fused statistics (`fused_style_stats`),
    each reference weighted equally. `grounds[j]`: style j's paper share, where given (`ground_weights`)."""
    rows = [fused_style_stats(features, imgs, ground=grounds[j] if j < len(grounds) else None)
            for j, imgs in enumerate(refs)]
    return StyleStats(mu={k: torch.cat([r.mu[k] for r in rows]) for k in rows[0].mu},
                      sigma={k: torch.cat([r.sigma[k] for r in rows]) for k in rows[0].sigma},
                      rgb_mu=torch.cat([r.rgb_mu for r in rows]), rgb_sigma=torch.cat([r.rgb_sigma for r in rows]))


def crop_border(f: torch.Tensor, margin: float) -> torch.Tensor:
    """Drop a border of `margin` (fraction) from a feature map."""
    mh, mw = int(f.shape[2] * margin), int(f.shape[3] * margin)
    return f[:, :, mh : f.shape[2] - mh, mw : f.shape[3] - mw]


def style_loss(feats: dict[int, torch.Tensor], target: StyleStats, taps: tuple[int, ...] = STYLE_TAPS,
               margin: float = 0.0, grid: int = 1) -> torch.Tensor:
    """Mean/std matching, each tap normalised by its target's size, averaged over taps. 0 iff statistics match.

    Global statistics can be met by a few local swatches: a generator learned to paint palette
    blobs along the top edge, where zero padding tells it the border is. A margin leaves the
    border out, and grid > 1 matches every tile on its own, so the style has to be everywhere.
    """
    total = feats[taps[0]].new_zeros(())
    for k in taps:
        tm, ts = target.mu[k], target.sigma[k]
        norm = (tm.pow(2).mean() + ts.pow(2).mean()).clamp_min(1e-8)
        for region in grid_tiles(crop_border(feats[k], margin), grid):
            mu, sigma = mean_std(region)
            total = total + (F.mse_loss(mu, tm) + F.mse_loss(sigma, ts)) / (norm * grid * grid)
    return total / len(taps)


def grid_tiles(f: torch.Tensor, grid: int) -> list[torch.Tensor]:
    """Split a feature map into grid x grid tiles (the last row/column takes the remainder)."""
    if grid == 1:
        return [f]
    h, w = f.shape[2], f.shape[3]
    ys = [h * i // grid for i in range(grid + 1)]
    xs = [w * i // grid for i in range(grid + 1)]
    return [f[:, :, ys[i] : ys[i + 1], xs[j] : xs[j + 1]] for i in range(grid) for j in range(grid)]


def colour_loss(image: torch.Tensor, target: StyleStats, margin: float = 0.0, grid: int = 1) -> torch.Tensor:
    """Image-space palette: per-channel RGB mean/std against the mixture's (border and tiles as above)."""
    total = image.new_zeros(())
    for region in grid_tiles(crop_border(image, margin), grid):
        mu, sigma = mean_std(region)
        total = total + F.mse_loss(mu, target.rgb_mu) + F.mse_loss(sigma, target.rgb_sigma)
    return total / (grid * grid)


def content_loss(feats: dict[int, torch.Tensor], content_feats: dict[int, torch.Tensor],
                 taps: tuple[int, ...] = (CONTENT_TAP,)) -> torch.Tensor:
    """Relative MSE MSE(F, Fc) / mean(Fc^2), averaged over taps (a stride-8 tap keeps faces, stride-16 layout)."""
    total = feats[taps[0]].new_zeros(())
    for k in taps:
        fc = content_feats[k]
        total = total + F.mse_loss(feats[k], fc) / fc.pow(2).mean().clamp_min(1e-8)
    return total / len(taps)


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Mean squared neighbour difference on [0, 1] pixels."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


# ---------------------------------------------------------------- image-space distributions

def _sorted_projections(points: torch.Tensor, dirs: torch.Tensor, count: int) -> torch.Tensor:
    """points (N, P, D) projected on dirs (D, K), sorted, resampled to `count` quantiles: (N, count, K)."""
    proj = torch.sort(points @ dirs, dim=1).values
    if proj.shape[1] == count:
        return proj
    idx = torch.linspace(0, proj.shape[1] - 1, count, device=points.device).round().long()
    return proj[:, idx]


def sliced_wasserstein(points: torch.Tensor, target: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Mean 1-D Wasserstein-1 distance over the projections `dirs` (D, K) between two point clouds per
    sample, (N, P, D) against (N, Q, D). Matches whole distributions (Heitz et al. 2021), where mean/std
    matching is met by a tint: a palette's spread, or a mostly flat picture with a few hard lines."""
    count = min(points.shape[1], target.shape[1])
    return (_sorted_projections(points, dirs, count) - _sorted_projections(target, dirs, count)).abs().mean()


def luma_gradients(image: torch.Tensor, scales: tuple[int, ...] = (1, 2, 4)) -> list[torch.Tensor]:
    """Per scale, the (N, P, 2) luma gradient vectors (central differences): the picture's strokes as a
    point cloud. Their distribution says how much is flat, how hard the edges are and which way they run."""
    weights = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey = (image * weights).sum(1, keepdim=True)
    out = []
    for s in scales:
        g = grey if s == 1 else F.avg_pool2d(grey, s)
        gx = (g[..., 1:-1, 2:] - g[..., 1:-1, :-2]) / 2
        gy = (g[..., 2:, 1:-1] - g[..., :-2, 1:-1]) / 2
        out.append(torch.stack([gx, gy], dim=-1).flatten(1, 3))
    return out


def random_directions(dim: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    d = torch.randn(dim, count, generator=generator)
    return d / d.norm(dim=0, keepdim=True)


# ---------------------------------------------------------------- strength, pixel pools and stability

GROUND = 0.92  # a pixel this light in every channel may be the paper of a clip-art reference


def paper_mask(img: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1] -> (H, W) bool: a clip art's white paper, i.e. near-white pixels joined to the
    picture's border through near-white pixels. White inside an outline (a collar, an eye) is drawing."""
    white = (img >= GROUND).all(0).float()[None, None]
    seed = torch.zeros_like(white)
    for edge in ((..., 0, slice(None)), (..., -1, slice(None)), (..., slice(None), 0), (..., slice(None), -1)):
        seed[edge] = white[edge]
    while True:  # flood fill: grow from the border, through white only
        grown = F.max_pool2d(seed, 3, 1, 1) * white
        if torch.equal(grown, seed):
            return seed[0, 0].bool()
        seed = grown


def ground_weights(img: torch.Tensor, share: float | None) -> torch.Tensor | None:
    """Per-pixel weights (H, W) under which a clip art's paper (`paper_mask`) is `share` of the picture, or
    None (unweighted) where no share is asked, the paper is already no more than that, or the picture is
    almost all paper. Clip art's page is not its style: at half the statistics it painted a cartoon's fills
    white."""
    if share is None:
        return None
    paper = paper_mask(img)
    p = float(paper.float().mean())
    if p <= share or p > 0.98:
        return None
    return torch.where(paper, share * (1 - p) / ((1 - share) * p), 1.0)


def _colours(img_pixels: list[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
    """A style's colour pool (P, 3) from its pictures' pixels (3, H, W) and weights (H, W) or None: each pixel
    as often as its weight says (paper pixels evenly subsampled)."""
    parts = []
    for img, w in img_pixels:
        pix = img.flatten(1).T
        if w is None:
            parts.append(pix)
            continue
        w = w.flatten()
        paper = w < 1
        parts.append(pix[~paper])
        kept = int(round(float(w[paper].sum())))
        if kept:
            idx = torch.nonzero(paper)[:, 0]
            parts.append(pix[idx[torch.linspace(0, len(idx) - 1, kept).long()]])
    return torch.cat(parts)


class PixelPools:
    """Each style's reference pixels and luma gradients, to draw target point clouds for any blend and strength."""

    def __init__(self, refs: list[list[torch.Tensor]], scales: tuple[int, ...] = (1, 2, 4),
                 grounds: tuple[float | None, ...] = ()) -> None:
        """`grounds[j]`: the share of style j's paper in its colour pool (`ground_weights`), where given. The
        gradient pool keeps the paper: it is flat, as a cartoon's fills are."""
        self.scales = scales
        self.colour = [_colours([(r, ground_weights(r, grounds[j] if j < len(grounds) else None)) for r in imgs])
                       for j, imgs in enumerate(refs)]
        grads = [[luma_gradients(r[None], scales) for r in imgs] for imgs in refs]
        self.grads = [[torch.cat([g[k][0] for g in per_ref]) for k in range(len(scales))] for per_ref in grads]

    @staticmethod
    def _draw(pools: list[torch.Tensor], own: torch.Tensor, w: torch.Tensor, strength: float, count: int,
              gen: torch.Generator) -> torch.Tensor:
        """`count` points: from each style in proportion to its weight times strength, the rest from `own`."""
        parts, left = [], count
        for pool, wj in zip(pools, w.tolist()):
            n = round(count * strength * wj)
            if n > 0:
                parts.append(pool[torch.randint(len(pool), (n,), generator=gen)])
                left -= n
        if left > 0:
            parts.append(own[torch.randint(len(own), (left,), generator=gen)])
        return torch.cat(parts)[:count]

    def loss(self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, strength: torch.Tensor, count: int,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        colour, grads = y.new_zeros(()), y.new_zeros(())
        dirs3, dirs2 = random_directions(3, 32, gen), random_directions(2, 16, gen)
        gy, gx = luma_gradients(y, self.scales), luma_gradients(x, self.scales)
        for i in range(y.shape[0]):
            s = float(strength[i])
            out = y[i].flatten(1).T
            pick = torch.randint(len(out), (count,), generator=gen)
            target = self._draw(self.colour, x[i].flatten(1).T, w[i], s, count, gen)
            colour = colour + sliced_wasserstein(out[pick][None], target[None], dirs3)
            for k in range(len(self.scales)):
                own = gx[k][i]
                n = min(count, len(own))
                pick = torch.randint(len(own), (n,), generator=gen)
                target = self._draw([g[k] for g in self.grads], own, w[i], s, n, gen)
                grads = grads + sliced_wasserstein(gy[k][i][pick][None], target[None], dirs2) / len(self.scales)
        return colour / y.shape[0], grads / y.shape[0]


def towards_input(target: StyleStats, content_feats: dict[int, torch.Tensor], x: torch.Tensor,
                  strength: torch.Tensor) -> StyleStats:
    """Style targets at strength s: s * the style's statistics + (1 - s) * the input's own."""
    s = strength
    mu, sigma = {}, {}
    for k in target.mu:
        m, sd = mean_std(content_feats[k])
        mu[k] = s * target.mu[k] + (1 - s) * m
        sigma[k] = s * target.sigma[k] + (1 - s) * sd
    m, sd = mean_std(x)
    return StyleStats(mu=mu, sigma=sigma, rgb_mu=s * target.rgb_mu + (1 - s) * m,
                      rgb_sigma=s * target.rgb_sigma + (1 - s) * sd)


def shift_consistency(run: Callable[[torch.Tensor], torch.Tensor], crops: torch.Tensor, y: torch.Tensor, crop: int,
                      rng: random.Random, noise: float) -> torch.Tensor:
    """Mean squared difference between the output of a shifted, noisier view and the output shifted the
    same way, on the overlap. `run` is the network with its style and strength fixed, and `y` its output on
    the unshifted crop. Camera motion is mostly such shifts; a net at 1/8 resolution is not
    shift-equivariant by itself, and its strokes would crawl."""
    margin = crops.shape[-1] - crop
    dy, dx = rng.randint(1, margin), rng.randint(1, margin)
    x2 = crops[:, :, dy : dy + crop, dx : dx + crop]
    x2 = (x2 + noise * torch.randn_like(x2)).clamp(0.0, 1.0)
    y2 = run(x2)
    return (y2[:, :, : crop - dy, : crop - dx] - y[:, :, dy:, dx:]).pow(2).mean()

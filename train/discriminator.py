"""Multi-scale PatchGAN discriminator, conditioned on the style blend by projection.

Each scale is a 70x70-class PatchGAN (Isola et al. 2017) with spectral norm on every conv
(Miyato et al. 2018), run on the image and on 2x-downsampled copies, so one scale judges
brush strokes and another the larger structure (the Scream's bands, the big swirls).
Conditioning is a projection (Miyato & Koyama 2018): logits = psi(h) + <embed(w), h>.
It is linear in w, so a blend is judged by the weighted sum of the per-style critics, which
asks for a look that satisfies all of them at once, not a cross-fade.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


@dataclass(frozen=True)
class DiscriminatorConfig:
    num_styles: int
    scales: int = 2
    channels: int = 64
    layers: int = 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiscriminatorConfig:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class PatchDiscriminator(nn.Module):
    """(N,3,H,W) in [0,1], (N,S) weights -> (N,1,H',W') patch logits."""

    def __init__(self, num_styles: int, channels: int, layers: int) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        cin, cout = 3, channels
        for _ in range(layers):
            convs.append(spectral_norm(nn.Conv2d(cin, cout, 4, stride=2, padding=1)))
            cin, cout = cout, min(cout * 2, 8 * channels)
        convs.append(spectral_norm(nn.Conv2d(cin, cin, 4, stride=1, padding=1)))
        self.convs = nn.ModuleList(convs)
        self.psi = spectral_norm(nn.Conv2d(cin, 1, 1))
        self.embed = spectral_norm(nn.Linear(num_styles, cin, bias=False))

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        h = x * 2.0 - 1.0
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        proj = (self.embed(weights)[:, :, None, None] * h).sum(dim=1, keepdim=True)
        return self.psi(h) + proj


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(
            PatchDiscriminator(config.num_styles, config.channels, config.layers) for _ in range(config.scales)
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 2)
            out.append(d(x, weights))
        return out


def hinge_d_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss for the critic, averaged over scales."""
    total = real[0].new_zeros(())
    for r, f in zip(real, fake):
        total = total + F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
    return total / len(real)


def hinge_g_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    return -sum(f.mean() for f in fake) / len(fake)

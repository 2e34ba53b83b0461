"""The tiny live generator: one network, a bank of styles, any blend of them.

Layout: pixel-unshuffle to 1/4 and 1/8 resolution, inverted-residual blocks at
1/8, then bilinear-resize-then-conv back up through 1/4 (with an encoder skip) and
1/2. The net predicts a residual at 1/2 resolution that is resized and added
to the input, which keeps faces and edges. A pixel-shuffle head was tried
first: it painted a 4x4 grid into every frame. An input skip at 1/2 cost 8%
more time on the CPU for no visible gain, so it was left out.
Style conditioning is FiLM: each style owns a per-channel scale and shift, and
the blend's scale/shift is the weighted sum, so blends come from one network.
The weighted sum is taken outside the painting graph (`mix_film`): the graph takes the
mixed FiLM vector, so a style fitted after training (engines/style_fit.py) is one more
row of the host's table, and every exported back-end runs it unchanged.
No normalisation layers: instance norm is slow in ONNX Runtime and awkward in
TensorRT, and FiLM already supplies the per-style statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.student_config import StudentConfig  # re-exported: the config lives apart so it loads without torch


class FiLM(nn.Module):
    """Per-style channel scale and shift; applies a mixed (scale, shift) pair taken from the FiLM vector."""

    def __init__(self, num_styles: int, channels: int) -> None:
        super().__init__()
        # Zero init: every style starts as the identity and learns its own offsets.
        self.scale = nn.Parameter(torch.zeros(num_styles, channels))
        self.shift = nn.Parameter(torch.zeros(num_styles, channels))

    @property
    def width(self) -> int:
        """This layer's share of the FiLM vector: its scale, then its shift."""
        return 2 * self.scale.shape[1]

    def table(self) -> torch.Tensor:
        """(rows, 2C): each style's scale and shift, side by side."""
        return torch.cat([self.scale, self.shift], dim=1)

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W), f: (N, 2C) mixed scale then shift
        c = x.shape[1]
        return x * (1.0 + f[:, :c, None, None]) + f[:, c:, None, None]


class InvertedResidual(nn.Module):
    """MobileNetV2 block with FiLM on the expanded features."""

    def __init__(self, channels: int, expansion: int, num_styles: int) -> None:
        super().__init__()
        hidden = channels * expansion
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.film = FiLM(num_styles, hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.film(self.expand(x), f))
        h = F.relu(self.depthwise(h))
        return x + self.project(h)


class HalfBlock(nn.Module):
    """Depthwise 3x3, per-style FiLM, pointwise 1x1, added back: cheap texture at 1/2 resolution."""

    def __init__(self, channels: int, num_styles: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.film = FiLM(num_styles, channels)
        self.project = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.project.weight)  # starts as the identity: a warm start keeps its output
        nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return x + self.project(F.relu(self.film(self.depthwise(x), f)))


class StudentNet(nn.Module):
    """(image (N,3,H,W) in [0,1], style_weights (N,S), strength (N,1)) -> (N,3,H,W) in [0,1]."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, s = config.enc_channels, config.body_channels, config.film_rows
        self.encode = nn.Conv2d(3 * 16, c1, 1)  # after unshuffle by 4
        self.down = nn.Conv2d(c1 * 4, c2, 1)  # after unshuffle by 2 -> 1/8
        self.down_film = FiLM(s, c2)
        self.body = nn.ModuleList(InvertedResidual(c2, config.expansion, s) for _ in range(config.blocks))
        self.up = nn.Conv2d(c2, c1, 1)
        merged = 2 * c1
        self.merge_dw = nn.Conv2d(merged, merged, 3, padding=1, groups=merged)
        self.merge_film = FiLM(s, merged)
        c3 = config.half_channels
        self.to_half = nn.Conv2d(merged, c3, 1)
        self.half_dw = nn.Conv2d(c3, c3, 3, padding=1, groups=c3)
        self.half_pw = nn.Conv2d(c3, c3, 1)
        self.half_blocks = nn.ModuleList(HalfBlock(c3, s) for _ in range(config.half_blocks))
        if config.paint:
            self.to_detail = nn.Conv2d(c3, config.detail_channels, 1)
            self.head_full = nn.Conv2d(config.detail_channels + 3, config.head_channels, 3, padding=1)
            self.head = nn.Conv2d(config.head_channels, 3, 1)
        else:
            self.head = nn.Conv2d(c3, 3, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, image: torch.Tensor, style_weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        return self.paint(image, mix_film(self, film_weights(self.config, style_weights, strength)), strength)

    def paint(self, image: torch.Tensor, film: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        """The network on a mixed FiLM vector (N, F) (see `mix_film`): what the exported graphs compute."""
        f = split_film(self, film)
        image = pad_frame(image, self.config.pad)
        e = F.relu(self.encode(F.pixel_unshuffle(image * 2.0 - 1.0, 4)))  # (N, c1, H/4, W/4)
        h = F.relu(self.down_film(self.down(F.pixel_unshuffle(e, 2)), f[0]))  # (N, c2, H/8, W/8)
        out = crop_frame(decode(self, image, e, h, f[1:], strength), self.config.pad)
        if self.training and not self.config.paint:
            # Straight-through clamp: a hard clamp has zero gradient once a pixel saturates, and
            # saturated blobs then never recover. Forward clamps; backward passes the gradient on.
            return out + (out.clamp(0.0, 1.0) - out).detach()
        return out.clamp(0.0, 1.0)


def pad_frame(image: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(image, (pad, pad, pad, pad), mode="replicate") if pad else image


def crop_frame(image: torch.Tensor, pad: int) -> torch.Tensor:
    return image[:, :, pad : image.shape[2] - pad, pad : image.shape[3] - pad] if pad else image


def film_weights(config: StudentConfig, style_weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """The FiLM mixing weights: the normalised style blend, and for a painting net the identity row at 1 - strength."""
    w = style_weights / style_weights.sum(dim=1, keepdim=True).clamp_min(1e-6)
    if not config.paint:
        return w
    s = strength.clamp(0.0, 1.0)
    return torch.cat([w * s, 1.0 - s], dim=1)


def film_layers(net: nn.Module) -> list[FiLM]:
    """The FiLM layers in the order their (scale, shift) pairs sit in the FiLM vector."""
    return [net.down_film, *(b.film for b in net.body), net.merge_film, *(b.film for b in net.half_blocks)]


def film_width(net: nn.Module) -> int:
    """F: the length of the FiLM vector the painting graph takes."""
    return sum(layer.width for layer in film_layers(net))


def film_table(net: nn.Module) -> torch.Tensor:
    """(rows, F): every FiLM row (the styles, then a painting net's identity row) as one vector each."""
    return torch.cat([layer.table() for layer in film_layers(net)], dim=1)


def mix_film(net: nn.Module, w: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
    """(N, rows) mixing weights from `film_weights` -> the (N, F) FiLM vector; `table` replaces the net's rows."""
    return w @ (film_table(net) if table is None else table)


def split_film(net: nn.Module, film: torch.Tensor) -> list[torch.Tensor]:
    """(N, F) -> one (N, 2C) slice per FiLM layer."""
    return list(film.split([layer.width for layer in film_layers(net)], dim=1))


def decode(net: nn.Module, image: torch.Tensor, e: torch.Tensor, h: torch.Tensor, f: list[torch.Tensor],
           strength: torch.Tensor) -> torch.Tensor:
    """Body and decoder from the encoder's features: shared by StudentNet and its fused inference copy.

    `f` holds the FiLM slices after the first (down_film's), in `film_layers` order."""
    nb = len(net.body)
    for block, fb in zip(net.body, f[:nb]):
        h = block(h, fb)
    u = F.interpolate(net.up(h), scale_factor=2.0, mode="bilinear", align_corners=False)
    m = torch.cat([F.relu(u), e], dim=1)  # (N, 2*c1, H/4, W/4)
    m = F.relu(net.merge_film(net.merge_dw(m), f[nb]))
    q = F.interpolate(net.to_half(m), scale_factor=2.0, mode="bilinear", align_corners=False)
    q = F.relu(net.half_pw(F.relu(net.half_dw(F.relu(q)))))  # (N, c3, H/2, W/2)
    for block, fb in zip(net.half_blocks, f[nb + 1:]):
        q = block(q, fb)
    if net.config.paint:
        # 1x1-then-resize == resize-then-1x1, at a quarter of the cost.
        d = F.interpolate(net.to_detail(q), scale_factor=2.0, mode="bilinear", align_corners=False)
        painted = torch.sigmoid(net.head(F.relu(net.head_full(torch.cat([d, image * 2.0 - 1.0], dim=1)))))
        # Below strength 0.05 the trained look fades to the exact input, so 0 is the input to the last bit;
        # everywhere above, the look is the network's own (the identity row does the in-between).
        fade = (strength.clamp(0.0, 1.0) * 20.0).clamp(max=1.0)[:, :, None, None]
        return image + fade * (painted - image)
    # Strength scales the residual inside the network, so every back-end agrees; it is
    # applied at 1/2 resolution, and 1x1-then-resize == resize-then-1x1 at a quarter of the cost.
    s = strength.clamp(0.0, 1.0)[:, :, None, None]
    residual = F.interpolate(net.head(q) * s, scale_factor=2.0, mode="bilinear", align_corners=False)
    return image + residual


def count_macs(config: StudentConfig, height: int = 360, width: int = 640) -> int:
    """Multiply-accumulates of one frame (convolutions only; FiLM and resizes are negligible)."""
    from engines.contract import padded_size

    h, w = padded_size(height, width)
    h, w = h + 2 * config.pad, w + 2 * config.pad
    p4, p8 = (h // 4) * (w // 4), (h // 8) * (w // 8)
    c1, c2, hid = config.enc_channels, config.body_channels, config.body_channels * config.expansion
    macs = p4 * 48 * c1 + p8 * 4 * c1 * c2
    macs += config.blocks * p8 * (c2 * hid + 9 * hid + hid * c2)
    p2, c3 = (h // 2) * (w // 2), config.half_channels
    macs += p8 * c2 * c1 + p4 * (9 * 2 * c1 + 2 * c1 * c3)
    macs += p2 * (9 * c3 + c3 * c3)
    macs += config.half_blocks * p2 * (9 * c3 + c3 * c3)
    if config.paint:
        d, k = config.detail_channels, config.head_channels
        macs += p2 * c3 * d + h * w * (9 * (d + 3) * k + k * 3)
    else:
        macs += p2 * c3 * 3
    return macs

"""The GAN teacher's generator: a Johnson-class residual network conditioned on a style blend and a strength.

Layout (Johnson et al. 2016, with the fixes fast_neural_style settled on): a 7x7 stem, two
stride-2 convolutions, residual blocks at 1/4 resolution, resize-then-conv upsampling (transposed
convolutions paint checkerboards) and a 7x7 head.

Conditioning is conditional instance norm (Dumoulin et al. 2017): every style owns a per-channel
scale and shift for every norm layer, and a blend uses the weighted sum, so blends come from one
network. Strength is a trained knob, not an output cross-fade: the conditioning vector is
(s * w, 1 - s), where the extra entry is an "identity" pseudo-style. The expression loss teaches
that entry to keep the content's own statistics, so s moves the look from the photo to the style.

Colour and texture take separate paths. Large-scale colour comes only from a per-style affine colour
map (3x4, blended like the norms) applied to the input; the residual the network paints loses its
low frequencies (block means over `lowpass` pixels, smoothly upsampled). Every run without this grew
coloured blobs, the same in every style: painting a bright patch somewhere is the cheapest way to raise
the feature statistics of a painting, and neither a local colour loss nor the critic took them back
within a CPU budget. A palette is global, strokes are local; blobs are neither, so they cannot form.

The residual is grey (`grey_residual`) since a free-colour one drew magenta/green fringes along edges. With
`chroma` it gains a colour part with no luma: the residual's deviation from grey, less its luma, blurred.
A painting's colour texture (Kandinsky's daubs, Van Gogh's blue-yellow strokes) is then paintable without
moving the light that outlines and faces are read from. From a grey-residual checkpoint this starts as
the identity: the head's three channels were trained only through their mean, so they are equal.

The output is the sum, clamped to [0, 1]. In training the clamp is
straight-through: a sigmoid or a hard clamp has no gradient once a pixel saturates, and a first run
here grew white blobs that no loss could take back (the student met the same trap). A small range
penalty on the raw residual keeps the clamp mostly idle. The head starts at zero: the identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.teacher_losses import luma


@dataclass(frozen=True)
class TeacherNetConfig:
    num_styles: int
    channels: tuple[int, int, int] = (32, 64, 128)  # full, 1/2 and 1/4 resolution
    blocks: int = 5
    lowpass: int = 16  # > 0: the residual loses what varies slower than this many pixels (see the module notes)
    # > 0: the last `style_filters` residual blocks and the decoder own one filter bank per style (see BankConv).
    style_filters: int = 0
    # The painted residual is grey (one value added to R, G and B): texture without chroma. Colour comes only
    # from the per-style colour maps; a free-colour residual drew magenta/green fringes along edges
    # (docs/training.md, "Per-style filter banks").
    grey_residual: bool = False
    # > 0 (with grey_residual): the residual also paints colour texture that leaves BT.601 luma untouched, box-
    # blurred over this many pixels (odd) so it cannot draw sharp fringes. Structure, the edge terms and the
    # eval's edge SSIM all read luma, so colour strokes cost them nothing (see the module notes).
    chroma: int = 0
    chroma_lowpass: int = 0  # the chroma's own `lowpass` (0: the same); larger lets colour daubs grow

    def __post_init__(self) -> None:
        if self.chroma > 0 and (not self.grey_residual or self.chroma % 2 == 0):
            raise ValueError(f"chroma = {self.chroma}: the chroma blur needs grey_residual = true and an odd width")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TeacherNetConfig:
        d = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d)


def remove_low(residual: torch.Tensor, block: int) -> torch.Tensor:
    """The residual less its block means over `block` pixels, smoothly upsampled (the module's lowpass)."""
    size = residual.shape[-2:]
    blocks = (-(-size[0] // block), -(-size[1] // block))
    low = F.interpolate(F.adaptive_avg_pool2d(residual, blocks), size=size, mode="bilinear", align_corners=False)
    return residual - low


def luma_free(colour: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) -> the same less a grey of its BT.601 luma (the weights every edge term and the eval read
    structure with), so its luma is 0: the weights sum to 1."""
    return colour - luma(colour)


def conditioning(weights: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """(N,S) style weights (rows sum to 1) and (N,1) strength -> (N,S+1) conditioning (s*w, 1-s)."""
    s = strength.clamp(0.0, 1.0)
    return torch.cat([weights * s, 1.0 - s], dim=1)


class CondInstanceNorm(nn.Module):
    """Instance norm whose affine parameters are the blend of per-style (and identity) parameters."""

    def __init__(self, num_cond: int, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_cond, channels))
        self.shift = nn.Parameter(torch.zeros(num_cond, channels))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = F.instance_norm(x, eps=1e-5)
        return x * (c @ self.scale)[:, :, None, None] + (c @ self.shift)[:, :, None, None]


class BankConv(nn.Module):
    """A convolution with one filter bank per style (StyleBank, Chen et al. 2017), blended by the conditioning.

    Convolution is linear in its weights, so a blend of banks is one convolution with the blended kernel:
    a mixture costs what one style costs. With only per-style norms, every style shared one trunk texture
    on the CPU budget (docs/training.md, run G); a bank lets each style paint its own strokes. Parameter
    names match nn.Conv2d's, with a leading style axis, so shared weights expand into banks (`expand_banks`).
    """

    def __init__(self, num_cond: int, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        shared = nn.Conv2d(cin, cout, kernel, stride)  # its initialisation, copied into every bank
        self.weight = nn.Parameter(shared.weight.detach()[None].repeat(num_cond, 1, 1, 1, 1))
        self.bias = nn.Parameter(shared.bias.detach()[None].repeat(num_cond, 1))
        self.stride = stride

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n, cin, h, w = x.shape
        weight = torch.einsum("nk,koihw->noihw", c, self.weight).flatten(0, 1)  # (N*out, in, k, k)
        # One grouped convolution runs every sample with its own blended kernel.
        y = F.conv2d(x.reshape(1, n * cin, h, w), weight, stride=self.stride, groups=n)
        return y.view(n, -1, *y.shape[-2:]) + (c @ self.bias)[:, :, None, None]


class ConvLayer(nn.Module):
    """Reflection-padded conv (zero padding tells the net where the border is; it paints swatches there).

    With `num_cond`, the weights are per-style banks (BankConv) and forward needs the conditioning."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, num_cond: int = 0) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv: nn.Module = BankConv(num_cond, cin, cout, kernel, stride) if num_cond else nn.Conv2d(
            cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(self.conv, BankConv):
            return self.conv(self.pad(x), c)
        return self.conv(self.pad(x))


class NormConv(nn.Module):
    """ConvLayer -> conditional instance norm -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, num_cond: int, stride: int = 1, bank: bool = False) -> None:
        super().__init__()
        self.conv = ConvLayer(cin, cout, kernel, stride, num_cond if bank else 0)
        self.norm = CondInstanceNorm(num_cond, cout)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x, c), c))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, num_cond: int, bank: bool = False) -> None:
        super().__init__()
        self.a = NormConv(channels, channels, 3, num_cond, bank=bank)
        self.conv = ConvLayer(channels, channels, 3, num_cond=num_cond if bank else 0)
        self.norm = CondInstanceNorm(num_cond, channels)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return x + self.norm(self.conv(self.a(x, c), c), c)


class UpsampleConv(nn.Module):
    """Bilinear x2 then conv: no checkerboard (fast_neural_style's reasoning, measured again here)."""

    def __init__(self, cin: int, cout: int, num_cond: int, bank: bool = False) -> None:
        super().__init__()
        self.layer = NormConv(cin, cout, 3, num_cond, bank=bank)

    def forward(self, x: torch.Tensor, c: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.layer(F.interpolate(x, size=size, mode="bilinear", align_corners=False), c)


class TeacherNet(nn.Module):
    """(image (N,3,H,W) in [0,1], style_weights (N,S), strength (N,1)) -> (N,3,H,W) in [0,1]."""

    def __init__(self, config: TeacherNetConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        k = config.num_styles + 1
        self.stem = NormConv(3, c1, 7, k)
        self.down1 = NormConv(c1, c2, 3, k, stride=2)
        self.down2 = NormConv(c2, c3, 3, k, stride=2)
        banks = config.style_filters
        self.body = nn.ModuleList(ResidualBlock(c3, k, bank=i >= config.blocks - banks) for i in range(config.blocks))
        self.up1 = UpsampleConv(c3, c2, k, bank=banks > 0)
        self.up2 = UpsampleConv(c2, c1, k, bank=banks > 0)
        self.head = ConvLayer(c1, 3, 7, num_cond=k if banks > 0 else 0)
        nn.init.zeros_(self.head.conv.weight)  # start as the identity
        nn.init.zeros_(self.head.conv.bias)
        eye = torch.cat([torch.eye(3), torch.zeros(3, 1)], dim=1)
        self.colour = nn.Parameter(eye.repeat(k, 1, 1))  # (S+1, 3, 4) affine colour maps, identity at start

    def forward(self, x: torch.Tensor, weights: torch.Tensor, strength: torch.Tensor,
                return_raw: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """With return_raw, also the unclamped output (for the range penalty)."""
        c = conditioning(weights, strength)
        h1 = self.stem(x, c)  # (N, c1, H, W)
        h2 = self.down1(h1, c)  # (N, c2, H/2, W/2)
        h = self.down2(h2, c)  # (N, c3, H/4, W/4)
        for block in self.body:
            h = block(h, c)
        h = self.up1(h, c, h2.shape[-2:])
        h = self.up2(h, c, h1.shape[-2:])
        m = torch.einsum("nk,kij->nij", c, self.colour)  # (N, 3, 4) the blend's colour map
        recoloured = torch.einsum("nij,njhw->nihw", m[:, :, :3], x) + m[:, :, 3, None, None]
        residual = self.head(h, c)
        cfg = self.config
        chroma = None
        if cfg.grey_residual:
            grey = residual.mean(dim=1, keepdim=True)
            if cfg.chroma > 0:
                chroma = luma_free(residual - grey)
                if cfg.chroma > 1:
                    chroma = F.avg_pool2d(chroma, cfg.chroma, stride=1, padding=cfg.chroma // 2,
                                          count_include_pad=False)
            residual = grey.expand_as(residual)
        if cfg.lowpass > 0:
            residual = remove_low(residual, cfg.lowpass)
        if chroma is not None:
            block = cfg.chroma_lowpass or cfg.lowpass
            residual = residual + (remove_low(chroma, block) if block > 0 else chroma)
        raw = recoloured + residual
        if self.training:
            y = raw + (raw.clamp(0.0, 1.0) - raw).detach()  # straight-through: saturated pixels still learn
        else:
            y = raw.clamp(0.0, 1.0)
        return (y, raw) if return_raw else y


def expand_banks(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict for `model` where shared convolutions become per-style banks (each a copy of the shared one).

    Warm-starts a style-filter generator from a shared one: every style starts from the trained trunk."""
    own = model.state_dict()
    out = {}
    for name, value in state.items():
        target = own.get(name)
        if target is not None and target.dim() == value.dim() + 1 and target.shape[1:] == value.shape:
            value = value[None].expand_as(target).clone()
        out[name] = value
    return out


def count_macs(config: TeacherNetConfig, height: int = 360, width: int = 640) -> int:
    """Multiply-accumulates of the convolutions for one frame (norms and activations are negligible)."""
    c1, c2, c3 = config.channels
    full, half, quarter = height * width, (height // 2) * (width // 2), (height // 4) * (width // 4)
    macs = full * 49 * 3 * c1 + half * 9 * c1 * c2 + quarter * 9 * c2 * c3
    macs += quarter * 2 * config.blocks * 9 * c3 * c3
    macs += half * 9 * c3 * c2 + full * 9 * c2 * c1 + full * 49 * c1 * 3
    return macs


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

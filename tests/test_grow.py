"""Growing a painting net: the wider, deeper net paints the same frames, and its new units can learn."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engines.student import StudentConfig, StudentNet
from tests.nets import random_net
from train.grow import grow

pytestmark = pytest.mark.unit

SMALL = StudentConfig(num_styles=3, enc_channels=8, body_channels=16, half_channels=8, blocks=2, half_blocks=1,
                      output="paint", detail_channels=4, head_channels=4, pad=8)
BIG = dataclasses.replace(SMALL, enc_channels=12, body_channels=24, half_channels=16, expansion=3, blocks=4,
                          half_blocks=3, detail_channels=8, head_channels=8)



def test_a_grown_net_paints_the_same_frames() -> None:
    src = random_net(SMALL)
    dst = grow(src, BIG).eval()
    x = torch.rand(4, 3, 40, 56)
    w = torch.softmax(torch.randn(4, 3) * 3, dim=1)
    s = torch.tensor([[1.0], [0.6], [0.2], [0.0]])
    with torch.no_grad():
        a, b = src(x, w, s), dst(x, w, s)
    assert (a - b).abs().max() < 1e-5
    # Not by accident: the source paints, and a net of the big layout from scratch paints something else.
    assert (a - x).abs().mean() > 0.02
    assert (StudentNet(BIG).eval()(x, w, s) - a).abs().mean() > 0.02


def test_the_new_units_learn() -> None:
    """The zero weights by which old channels read new ones get gradients, so growth is not dead capacity."""
    dst = grow(random_net(SMALL), BIG)
    x = torch.rand(2, 3, 32, 32)
    dst(x, torch.eye(3)[:2], torch.ones(2, 1)).square().mean().backward()
    expand = dst.body[0].expand.weight.grad  # (hidden, body, 1, 1): old hidden rows, new body columns
    assert expand[: SMALL.body_channels * SMALL.expansion, SMALL.body_channels:].abs().sum() > 0
    assert dst.body[3].project.weight.grad.abs().sum() > 0  # a new block, zeroed so it starts as the identity


def test_growth_refuses_to_shrink_or_change_the_layout() -> None:
    src = random_net(SMALL)
    with pytest.raises(ValueError, match="half_channels cannot shrink"):
        grow(src, dataclasses.replace(BIG, half_channels=4))
    with pytest.raises(ValueError, match="styles"):
        grow(src, dataclasses.replace(BIG, num_styles=4))
    with pytest.raises(ValueError, match="painting"):
        grow(StudentNet(StudentConfig(num_styles=3)), StudentConfig(num_styles=3, body_channels=96))

"""Shrinking a painting net: the shallower net paints what the source paints with the left-out blocks skipped."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from engines.student import StudentConfig, StudentNet
from tests.nets import random_net
from train.shrink import shrink, spread

pytestmark = pytest.mark.unit

DEEP = StudentConfig(num_styles=3, enc_channels=8, body_channels=16, half_channels=8, blocks=6, half_blocks=2,
                     output="paint", detail_channels=4, head_channels=4, pad=8)


def test_the_kept_blocks_are_spread_over_the_depth() -> None:
    assert spread(6, 3) == [1, 3, 5]
    assert spread(6, 1) == [3]
    assert spread(2, 1) == [1]
    assert spread(6, 6) == list(range(6))


@pytest.mark.parametrize("blocks,half_blocks", [(3, 1), (1, 0), (6, 2)])
def test_a_shrunk_net_paints_the_source_with_its_left_out_blocks_skipped(blocks: int, half_blocks: int) -> None:
    src = random_net(DEEP)
    dst = shrink(src, dataclasses.replace(DEEP, blocks=blocks, half_blocks=half_blocks)).eval()
    # Both stacks are residual: a block whose projection is zero is the identity, i.e. skipped.
    skipped = copy.deepcopy(src)
    with torch.no_grad():
        for stack, k in ((skipped.body, blocks), (skipped.half_blocks, half_blocks)):
            for i, block in enumerate(stack):
                if i not in spread(len(stack), k):
                    block.project.weight.zero_()
                    block.project.bias.zero_()
    x = torch.rand(3, 3, 40, 56)
    w = torch.softmax(torch.randn(3, 3) * 3, dim=1)
    s = torch.tensor([[1.0], [0.6], [0.2]])
    with torch.no_grad():
        a, b = skipped(x, w, s), dst(x, w, s)
    assert (a - b).abs().max() < 1e-5
    if (blocks, half_blocks) != (DEEP.blocks, DEEP.half_blocks):  # not by accident: skipping changes the frame
        assert (src(x, w, s) - b).abs().mean() > 1e-3


def test_shrinking_refuses_width_or_growth() -> None:
    src = random_net(DEEP)
    with pytest.raises(ValueError, match="only blocks"):
        shrink(src, dataclasses.replace(DEEP, blocks=3, body_channels=8))
    with pytest.raises(ValueError, match="cannot become"):
        shrink(src, dataclasses.replace(DEEP, blocks=7))
    with pytest.raises(ValueError, match="painting"):
        shrink(StudentNet(StudentConfig(num_styles=3)), StudentConfig(num_styles=3, blocks=3))

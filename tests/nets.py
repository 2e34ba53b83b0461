"""Painting nets with every weight random, for the tests that reshape a net (grow, shrink)."""

from __future__ import annotations

import torch

from engines.student import StudentConfig, StudentNet


def random_net(config: StudentConfig) -> StudentNet:
    """Every weight random, FiLM included (fresh FiLM is zero, which would hide a mis-mapped channel or block)."""
    torch.manual_seed(0)
    net = StudentNet(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return net

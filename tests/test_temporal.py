"""The temporal term on real motion (engines/temporal.py) and the clip pairs bundled for the style fit.

The pairs must carry real motion that their flow explains (else the term would teach nothing), the
mirrored draw must mirror the motion too, and the term must tell a flickering output from a steady one.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from engines.temporal import CLIP_PAIRS, ClipPairs, temporal_loss

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pairs() -> ClipPairs:
    return ClipPairs()


def test_the_bundled_pairs_are_real_motion_their_flow_explains(pairs: ClipPairs) -> None:
    assert CLIP_PAIRS.stat().st_size < 3_000_000 and len(pairs) >= 8
    still, warped = [], []
    for i in range(len(pairs)):
        p = pairs.pair(i)
        assert p.frames.shape[:2] == (2, 3) and p.flow.shape[:2] == (1, 2) and 0.5 < float(p.mask.mean()) <= 1.0
        zero = torch.zeros_like(p.flow)
        still.append(float(temporal_loss(p.frames[1:], p.frames[:1], zero, p.mask)))
        warped.append(float(temporal_loss(p.frames[1:], p.frames[:1], p.flow, p.mask)))
    # Doing nothing about the motion (zero flow) costs far more than following it: the pairs move.
    assert np.mean(warped) < 0.5 * np.mean(still), (warped, still)
    assert float(np.median(np.abs(np.stack([pairs.pair(i).flow.numpy() for i in range(len(pairs))])))) > 0.3


def test_a_mirrored_draw_mirrors_the_motion(pairs: ClipPairs) -> None:
    moving = max(range(len(pairs)), key=lambda i: float(pairs.pair(i).flow[:, 0].abs().mean()))
    p, m = pairs.pair(moving), pairs.pair(moving, mirrored=True)
    err = float(temporal_loss(p.frames[1:], p.frames[:1], p.flow, p.mask))
    assert float(temporal_loss(m.frames[1:], m.frames[:1], m.flow, m.mask)) == pytest.approx(err, rel=0.05)
    unsigned = m.flow * torch.tensor([-1.0, 1.0])[None, :, None, None]  # mirrored pixels, motion not mirrored
    assert float(temporal_loss(m.frames[1:], m.frames[:1], unsigned, m.mask)) > 1.3 * err
    keys = {pairs.sample(random.Random(seed))[0] for seed in range(64)}
    assert {k[1] for k in keys} == {False, True} and len({k[0] for k in keys}) > len(pairs) // 2


def test_the_term_tells_flicker_from_a_steady_output(pairs: ClipPairs) -> None:
    gen = torch.Generator().manual_seed(0)
    steady, flicker = [], []
    for i in range(len(pairs)):
        p = pairs.pair(i)
        steady.append(float(temporal_loss(p.frames[1:], p.frames[:1], p.flow, p.mask)))
        boiled = (p.frames[1:] + 0.08 * torch.randn(p.frames[1:].shape, generator=gen)).clamp(0, 1)
        flicker.append(float(temporal_loss(boiled, p.frames[:1], p.flow, p.mask)))
    assert np.mean(flicker) > 2.0 * np.mean(steady), (flicker, steady)


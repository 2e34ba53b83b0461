"""Grow a painting net into a wider, deeper one that paints exactly the same frames (a function-preserving
warm start, in the spirit of Net2Net).

The teacher is the student's layout at several times its width and depth. From scratch, a painter needed
thousands of CPU steps before its styles parted (docs/training.md); grown from the bundled student, the
teacher starts at the student's look and spends its steps and extra capacity on going past it.

Every old channel keeps its weights; a new channel gets a fresh random input side, and the old channels read
it through zero weights, so at step 0 the new units change nothing and their gradients are live. New blocks
are residual with a zeroed projection: the identity.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.student import StudentConfig, StudentNet

Map = torch.Tensor  # old channel index -> new channel index


def _prefix(old: int) -> Map:
    return torch.arange(old)


def _pair(old: int, new: int, tail_old: int) -> Map:
    """A concatenation [a (old -> new wide), b (tail_old wide)]: b's channels move to start at `new`."""
    return torch.cat([torch.arange(old), new + torch.arange(tail_old)])


def grow(src: StudentNet, config: StudentConfig) -> StudentNet:
    """A `config`-shaped painting net whose output equals `src`'s for every input, style and strength."""
    old = src.config
    if not (old.paint and config.paint):
        raise ValueError("grow: both nets must use the painting layout")
    if config.num_styles != old.num_styles:
        raise ValueError(f"grow: {old.num_styles} styles cannot become {config.num_styles}")
    for name in ("enc_channels", "body_channels", "half_channels", "expansion", "blocks", "half_blocks",
                 "detail_channels", "head_channels"):
        if getattr(config, name) < getattr(old, name):
            raise ValueError(f"grow: {name} cannot shrink ({getattr(old, name)} -> {getattr(config, name)})")
    dst = StudentNet(config)
    c1, c2, c3 = _prefix(old.enc_channels), _prefix(old.body_channels), _prefix(old.half_channels)
    hid = _prefix(old.body_channels * old.expansion)
    # After pixel_unshuffle by 2, channel c*4 + k: appended channels leave the old indices where they were.
    e4 = _prefix(old.enc_channels * 4)
    merged = _pair(old.enc_channels, config.enc_channels, old.enc_channels)
    head_in = _pair(old.detail_channels, config.detail_channels, 3)
    d, k, rgb, pix = _prefix(old.detail_channels), _prefix(old.head_channels), _prefix(3), _prefix(48)
    with torch.no_grad():
        _conv(dst.encode, src.encode, pix, c1)
        _conv(dst.down, src.down, e4, c2)
        _film(dst.down_film, src.down_film, c2)
        for i, block in enumerate(dst.body):
            if i < len(src.body):
                s = src.body[i]
                _conv(block.expand, s.expand, c2, hid)
                _film(block.film, s.film, hid)
                _conv(block.depthwise, s.depthwise, None, hid)
                _conv(block.project, s.project, hid, c2)
            else:
                nn.init.zeros_(block.project.weight)
                nn.init.zeros_(block.project.bias)
        _conv(dst.up, src.up, c2, c1)
        _conv(dst.merge_dw, src.merge_dw, None, merged)
        _film(dst.merge_film, src.merge_film, merged)
        _conv(dst.to_half, src.to_half, merged, c3)
        _conv(dst.half_dw, src.half_dw, None, c3)
        _conv(dst.half_pw, src.half_pw, c3, c3)
        for block, s in zip(dst.half_blocks, src.half_blocks):  # extra ones start as the identity already
            _conv(block.depthwise, s.depthwise, None, c3)
            _film(block.film, s.film, c3)
            _conv(block.project, s.project, c3, c3)
        _conv(dst.to_detail, src.to_detail, c3, d)
        _conv(dst.head_full, src.head_full, head_in, k)
        _conv(dst.head, src.head, k, rgb)
    return dst


def _conv(dst: nn.Conv2d, src: nn.Conv2d, in_map: Map | None, out_map: Map) -> None:
    """Copy src into dst at the mapped channels; old outputs read new inputs through zeros.
    `in_map` None: a depthwise convolution (each output reads only its own channel)."""
    if in_map is None:
        dst.weight[out_map] = src.weight
    else:
        rows = dst.weight[out_map]
        rows.zero_()
        rows[:, in_map] = src.weight
        dst.weight[out_map] = rows
    dst.bias[out_map] = src.bias


def _film(dst: nn.Module, src: nn.Module, channels: Map) -> None:
    dst.scale[:, channels] = src.scale
    dst.shift[:, channels] = src.shift

"""A shallower copy of a painting net: the warm start of a smaller student.

Only depth shrinks (blocks at 1/8 and at 1/2 resolution); every width stays, so each kept layer keeps its
weights exactly. Both block stacks are residual, so a block left out is a step of refinement skipped, not a
broken path, and the copy starts near the source's look instead of from noise, where a painter needed
thousands of CPU steps before its styles parted (docs/training.md). The kept blocks are spread over the
depth (the centre of each of k equal spans), so early and late refinements both survive.
"""

from __future__ import annotations

from dataclasses import replace

from engines.student import StudentConfig, StudentNet


def spread(n: int, k: int) -> list[int]:
    """k of range(n), the centre of each of k equal spans: spread(6, 3) == [1, 3, 5], spread(6, 1) == [3]."""
    return [int((i + 0.5) * n / k) for i in range(k)]


def shrink(src: StudentNet, config: StudentConfig) -> StudentNet:
    """A `config`-shaped net holding `src`'s weights, with fewer blocks at 1/8 and/or 1/2 resolution."""
    old = src.config
    if not (old.paint and config.paint):
        raise ValueError("shrink: both nets must use the painting layout")
    if replace(config, blocks=old.blocks, half_blocks=old.half_blocks, pad=old.pad) != old:
        raise ValueError("shrink: only blocks and half_blocks may change (every width stays)")
    if config.blocks > old.blocks or config.half_blocks > old.half_blocks:
        raise ValueError(f"shrink: {old.blocks}/{old.half_blocks} blocks cannot become "
                         f"{config.blocks}/{config.half_blocks}")
    state = src.state_dict()
    for stack, n, k in (("body", old.blocks, config.blocks), ("half_blocks", old.half_blocks, config.half_blocks)):
        kept = spread(n, k)
        moved = {}
        for key in [key for key in state if key.startswith(f"{stack}.")]:
            _, index, rest = key.split(".", 2)
            value = state.pop(key)
            if int(index) in kept:
                moved[f"{stack}.{kept.index(int(index))}.{rest}"] = value
        state.update(moved)
    dst = StudentNet(config)
    dst.load_state_dict(state)
    return dst

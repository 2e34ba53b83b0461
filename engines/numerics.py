"""CPU numerics for the training loops and the serve-time style fit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Flush denormals to zero while training, and restore IEEE behaviour after.

    Tiny zero-initialised and FiLM gradients otherwise hit slow denormal arithmetic. The flag is
    process-wide (it sets the CPU's FTZ/DAZ bits), so a loop that leaves it on breaks other code in
    the same process: hypothesis, for one, refuses to run.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)

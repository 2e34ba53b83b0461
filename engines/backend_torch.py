"""PyTorch eager on the CPU, FP32: the reference that every other back-end is measured against."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engines.artifact import Artifact
from engines.backends import Backend

if TYPE_CHECKING:
    from engines.engine_spec import EngineSpec


class TorchBackend(Backend):
    """StudentNet itself (not the fused inference graph), eager, on the CPU."""

    kind = "torch"

    def __init__(self, artifact: Artifact, precision: str = "fp32", threads: int | None = None,
                 spec: EngineSpec | None = None) -> None:
        super().__init__(artifact, precision)
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        self.net = artifact.load_student()

    def run(self, image: np.ndarray, film: np.ndarray, strength: np.ndarray) -> np.ndarray:
        t = self._torch
        with t.inference_mode():
            y = self.net.paint(t.from_numpy(image), t.from_numpy(film), t.from_numpy(strength))
        return y.numpy()

"""PyTorch on a CUDA GPU: the fused student in FP16 (or FP32), channels_last, replayed as a CUDA graph.

Optionally `torch.compile`d (Triton kernels; compiling costs tens of seconds per shape,
so it is off unless asked for: compile=True or STYLIZER_TORCH_COMPILE=1). The FiLM vector and strength are graph inputs, so a
new blend (or a newly fitted style) is a new value in a static buffer, never a re-capture.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from engines.artifact import Artifact
from engines.device_backend import DeviceBackend, DeviceSlot
from engines.fused_student import fuse

if TYPE_CHECKING:
    from engines.engine_spec import EngineSpec


class TorchCudaBackend(DeviceBackend):
    """The student as torch modules on the device; device="cpu" runs the same path for tests."""

    kind = "torch-cuda"

    def __init__(self, artifact: Artifact, precision: str = "fp16", threads: int | None = None,
                 spec: EngineSpec | None = None, device: str = "cuda", cuda_graph: bool = True,
                 compile: bool | None = None) -> None:
        super().__init__(artifact, precision, device, cuda_graph)
        t = self.torch
        net: Any = fuse(artifact.load_student()).to(self.dev, self.dtype)
        net = net.to(memory_format=t.channels_last)
        if compile is None:
            compile = os.environ.get("STYLIZER_TORCH_COMPILE", "") == "1"
        if compile:
            # Default mode: Inductor adds no CUDA graphs of its own (ours wrap colour conversion too), and
            # no max-autotune, whose kernel search takes minutes per shape.
            net = t.compile(net, fullgraph=True, dynamic=False)
        self.compiled = bool(compile)
        self.net = net

    @property
    def name(self) -> str:
        return super().name + ("-compiled" if self.compiled else "")

    def _network(self, slot: DeviceSlot) -> Any:
        return self.net(slot.image, slot.film, slot.strength)

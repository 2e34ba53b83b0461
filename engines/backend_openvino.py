"""OpenVINO on the CPU (optional extra): fp32, bf16 where the CPU supports it, or the int8 QDQ model.

bf16 is only offered where OpenVINO reports the BF16 capability (AVX512-BF16 or AMX);
elsewhere asking for it is an error rather than a silent fp32 run. Each frame shape
gets its own statically shaped compiled model (a reshape costs ~0.1 s once) and
an infer request whose input and output tensors share our preallocated arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.artifact import Artifact
from engines.backends import Backend, BackendError, inference_threads
from engines.contract import INPUT_IMAGE, INPUT_STRENGTH, INPUT_WEIGHTS

if TYPE_CHECKING:
    from engines.engine_spec import EngineSpec


def import_openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendError("the openvino back-end needs OpenVINO: pip install 'stylizer[openvino]'") from exc
    return ov


def bf16_supported() -> bool:
    """Whether this CPU runs bf16 natively, as OpenVINO sees it (False where OpenVINO is absent)."""
    try:
        ov = import_openvino()
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # absent package, or a CPU plugin that cannot start
        return False


@dataclass
class _Slot:
    image: np.ndarray  # (N, 3, Hp, Wp) float32, shared with the infer request
    weights: np.ndarray
    strength: np.ndarray
    out: np.ndarray
    request: Any


class OpenVinoBackend(Backend):
    """OpenVINO CPU plugin over the artifact's ONNX (fp32 file for fp32/bf16, int8 file for int8)."""

    kind = "openvino"

    def __init__(self, artifact: Artifact, precision: str = "fp32", threads: int | None = None,
                 spec: EngineSpec | None = None) -> None:
        super().__init__(artifact, precision)
        ov = import_openvino()
        from engines.backend_onnx import onnx_file, stale_reason

        self._ov = ov
        self.core = ov.Core()
        if precision == "bf16" and "BF16" not in self.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise BackendError("this CPU has no native bf16 (needs AVX512-BF16 or AMX); use openvino-fp32")
        path = onnx_file(artifact, "int8" if precision == "int8" else "fp32", spec)
        if not path.is_file():
            raise BackendError(f"{artifact.path}: no {path.name} for openvino-{precision}")
        stale = stale_reason(artifact, path)
        if stale:
            raise BackendError(stale)
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable files
            raise BackendError(f"{path}: OpenVINO cannot read it ({str(exc).splitlines()[0]})") from exc
        self.config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": threads or inference_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._slots: dict[tuple[int, ...], _Slot] = {}

    def _slot(self, shape: tuple[int, ...]) -> _Slot:
        slot = self._slots.get(shape)
        if slot is None:
            ov, n = self._ov, shape[0]
            s = self.contract.num_styles
            self.model.reshape({INPUT_IMAGE: list(shape), INPUT_WEIGHTS: [n, s], INPUT_STRENGTH: [n, 1]})
            compiled = self.core.compile_model(self.model, "CPU", self.config)
            slot = _Slot(np.zeros(shape, np.float32), np.zeros((n, s), np.float32), np.zeros((n, 1), np.float32),
                         np.zeros(shape, np.float32), compiled.create_infer_request())
            req = slot.request
            for name, arr in ((INPUT_IMAGE, slot.image), (INPUT_WEIGHTS, slot.weights), (INPUT_STRENGTH, slot.strength)):
                req.set_tensor(name, ov.Tensor(arr, shared_memory=True))
            req.set_output_tensor(0, ov.Tensor(slot.out, shared_memory=True))
            self._slots = {shape: slot}  # one live size at a time
        return slot

    def _input_buffer(self, n: int, hp: int, wp: int) -> np.ndarray:
        return self._slot((n, 3, hp, wp)).image

    def run(self, image: np.ndarray, weights: np.ndarray, strength: np.ndarray) -> np.ndarray:
        slot = self._slot(tuple(image.shape))
        if image is not slot.image:
            np.copyto(slot.image, image)
        np.copyto(slot.weights, weights)
        np.copyto(slot.strength, strength)
        slot.request.infer()
        return slot.out

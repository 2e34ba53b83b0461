"""ONNX Runtime: fp32 or static int8 (QDQ) on the CPU, fp32/fp16 on the CUDA provider where installed.

I/O is preallocated per frame shape: the input, FiLM vector, strength and output arrays
and their IOBinding are made once, then every frame writes into the same memory
and calls run_with_iobinding. Worker threads do not spin while idle, so the
encoder beside us gets the cores back between frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.artifact import Artifact
from engines.backends import Backend, BackendError, inference_threads
from engines.contract import INPUT_FILM, INPUT_IMAGE, INPUT_STRENGTH, OUTPUT_IMAGE

if TYPE_CHECKING:
    from engines.engine_spec import EngineSpec

FP16_ONNX_FILE = "student.fp16.onnx"


def onnx_file(art: Artifact, precision: str, spec: EngineSpec | None) -> Path:
    """Which ONNX file runs `precision`: the engine's own file, else the model folder's."""
    if spec is not None:
        return spec.path / spec.file
    return {"fp32": art.onnx_path, "int8": art.int8_onnx_path, "fp16": art.path / FP16_ONNX_FILE}[precision]


def stale_reason(art: Artifact, path: Path) -> str | None:
    """Why the ONNX file at `path` must not run: damaged since it was written, or made from other weights (None:
    neither, or unstamped)."""
    from engines.onnx_export import STAMP_WEIGHTS, check_stamp

    props, damaged = check_stamp(path)
    if damaged:
        return (f"{path}: damaged (its graph does not match the digest it was written with); re-export it: "
                f"python -m engines quantize {art.path}")
    made_from = props.get(STAMP_WEIGHTS)
    if made_from and made_from != art.weights_sha256:
        return (f"{path.name} was made from other weights ({made_from[:12]}, model has {art.weights_sha256[:12]}); "
                f"rebuild it: python -m engines quantize {art.path}")
    return None


def check_graph_inputs(path: Path, names: set[str]) -> None:
    """Refuse a graph whose inputs are not the contract's, naming the fix for one exported before `film`."""
    from engines.contract import INPUT_WEIGHTS

    if names == {INPUT_IMAGE, INPUT_WEIGHTS, INPUT_STRENGTH}:
        raise BackendError(f"{path}: an older graph that takes style weights, not the FiLM vector; re-export it: "
                           f"python -m engines quantize --no-int8 {path.parent}")
    if names != {INPUT_IMAGE, INPUT_FILM, INPUT_STRENGTH}:
        raise BackendError(f"{path}: inputs {sorted(names)} do not match the contract")


@dataclass
class _Slot:
    """Host buffers bound to the session for one input shape; owned by the back-end, reused every frame."""

    image: np.ndarray  # (N, 3, Hp, Wp) in the model's float type
    film: np.ndarray  # (N, F)
    strength: np.ndarray  # (N, 1)
    out: np.ndarray  # (N, 3, Hp, Wp) float32 (or the model's type)
    binding: Any


class OnnxBackend(Backend):
    """ONNX Runtime session over the artifact's (or engine's) ONNX file."""

    kind = "onnx"

    def __init__(self, artifact: Artifact, precision: str = "fp32", threads: int | None = None,
                 spec: EngineSpec | None = None, onnx_path: Path | None = None) -> None:
        super().__init__(artifact, precision)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("the onnx back-end needs onnxruntime: pip install onnxruntime") from exc
        path = onnx_path or onnx_file(artifact, precision, spec)
        if not path.is_file():
            hint = {"int8": f"python -m engines quantize {artifact.path}",
                    "fp16": "python -m engines build --backend onnx --precision fp16"}.get(precision, "export it")
            raise BackendError(f"{artifact.path}: no {path.name}; make it with `{hint}` or use --backend torch")
        stale = stale_reason(artifact, path)
        if stale:
            raise BackendError(stale)
        self.onnx_path = path
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or inference_threads()
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        # int8 QDQ is a CPU format here; fp32/fp16 go to the GPU when onnxruntime-gpu is installed.
        if precision != "int8" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
            raise BackendError(f"{path}: cannot load ONNX model ({str(exc).splitlines()[0]})") from exc
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        inputs = {i.name: i for i in self.session.get_inputs()}
        check_graph_inputs(path, set(inputs))
        width = inputs[INPUT_FILM].shape[1]
        if isinstance(width, int) and width != self.film_width:
            raise BackendError(f"{path}: takes a FiLM vector of {width}, the model's table has {self.film_width}")
        self._dtype = np.float16 if "float16" in inputs[INPUT_IMAGE].type else np.float32
        self._slots: dict[tuple[int, ...], _Slot] = {}

    def _slot(self, shape: tuple[int, ...]) -> _Slot:
        slot = self._slots.get(shape)
        if slot is None:
            n = shape[0]
            slot = _Slot(
                image=np.empty(shape, self._dtype),
                film=np.empty((n, self.film_width), self._dtype),
                strength=np.empty((n, 1), self._dtype),
                out=np.empty(shape, self._dtype),
                binding=self.session.io_binding(),
            )
            b = slot.binding
            for name, arr in ((INPUT_IMAGE, slot.image), (INPUT_FILM, slot.film), (INPUT_STRENGTH, slot.strength)):
                b.bind_cpu_input(name, arr)
            b.bind_output(OUTPUT_IMAGE, "cpu", 0, self._dtype, list(shape), slot.out.ctypes.data)
            self._slots = {shape: slot}  # one live size at a time: a new size retires the old buffers
        return slot

    def _input_buffer(self, n: int, hp: int, wp: int) -> np.ndarray:
        if self._dtype == np.float32:  # frames are written straight into the bound input
            return self._slot((n, 3, hp, wp)).image
        return super()._input_buffer(n, hp, wp)

    def run(self, image: np.ndarray, film: np.ndarray, strength: np.ndarray) -> np.ndarray:
        slot = self._slot(tuple(image.shape))
        if image is not slot.image:
            np.copyto(slot.image, image, casting="same_kind")
        np.copyto(slot.film, film, casting="same_kind")
        np.copyto(slot.strength, strength, casting="same_kind")
        if self.device == "cuda":
            slot.binding.synchronize_inputs()
        self.session.run_with_iobinding(slot.binding)
        if self.device == "cuda":
            slot.binding.synchronize_outputs()
        return slot.out if self._dtype == np.float32 else slot.out.astype(np.float32)

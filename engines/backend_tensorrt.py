"""TensorRT (10+): build a strongly typed engine from the student's ONNX, and run it.

Build: the ONNX is exported from a `.half()` model, so the network is strongly typed
FP16 (no weakly typed BuilderFlag.FP16, which TensorRT 10 deprecates); a timing cache
makes rebuilds fast; one optimisation profile covers the (batch, height, width) range.
InstanceNorm: TensorRT 10's parser imports it natively (its plugin path was removed),
and our student has no normalisation layers at all (FiLM instead), so neither path
is exercised; the parity test in tests/test_gpu.py proves the built engine matches.

Run: I/O by tensor name, bound to torch CUDA tensors that a slot allocates once
(`set_tensor_address` when the slot is first used, not per frame), then
`execute_async_v3` on the current stream; the whole frame path is captured in a
CUDA graph (engines/device_backend.py). torch owns the CUDA context, so no PyCUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.artifact import Artifact, ArtifactError
from engines.backends import BackendError
from engines.contract import INPUT_FILM, INPUT_IMAGE, INPUT_STRENGTH, OUTPUT_IMAGE
from engines.device_backend import DeviceBackend, DeviceSlot

if TYPE_CHECKING:
    from engines.engine_spec import EngineSpec

PLAN_FILE = "student.plan"
TIMING_CACHE_FILE = "timing.cache"
WORKSPACE_BYTES = 2 << 30


class TensorRTMissing(BackendError):
    """TensorRT is not installed."""


def import_tensorrt() -> Any:
    """The tensorrt module, or one clear error line."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTMissing("the tensorrt back-end needs TensorRT 10+: pip install 'stylizer[tensorrt]' "
                              "(NVIDIA GPU and driver required)") from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise TensorRTMissing(f"TensorRT {trt.__version__} is too old; the tensorrt back-end needs 10+")
    return trt


@dataclass(frozen=True)
class Profile:
    """The (N, H, W) range one optimisation profile accepts; H and W already multiples of 8."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def contains(self, n: int, h: int, w: int) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, (n, h, w), self.max))


def build_plan(onnx_path: Path, plan_path: Path, profile: Profile, film_width: int,
               timing_cache: Path | None = None, workspace: int = WORKSPACE_BYTES) -> None:
    """ONNX -> serialized TensorRT engine at `plan_path` (precision comes from the ONNX types)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if hasattr(trt, "OnnxParserFlag") and hasattr(trt.OnnxParserFlag, "NATIVE_INSTANCENORM"):
        parser.set_flag(trt.OnnxParserFlag.NATIVE_INSTANCENORM)  # the default in 10+; explicit for clarity
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"{onnx_path}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    opt = builder.create_optimization_profile()
    (n0, h0, w0), (n1, h1, w1), (n2, h2, w2) = profile.min, profile.opt, profile.max
    opt.set_shape(INPUT_IMAGE, (n0, 3, h0, w0), (n1, 3, h1, w1), (n2, 3, h2, w2))
    opt.set_shape(INPUT_FILM, (n0, film_width), (n1, film_width), (n2, film_width))
    opt.set_shape(INPUT_STRENGTH, (n0, 1), (n1, 1), (n2, 1))
    config.add_optimization_profile(opt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT could not build the engine (see its log above)")
    tmp = plan_path.with_name(plan_path.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(plan_path)
    if timing_cache is not None:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))


class TensorRTBackend(DeviceBackend):
    """A built engine folder's student.plan, run on the GPU it was built for."""

    kind = "tensorrt"
    channels_last = False  # the engine's inputs are linear NCHW

    def __init__(self, artifact: Artifact, precision: str = "fp16", threads: int | None = None,
                 spec: EngineSpec | None = None, cuda_graph: bool = True) -> None:
        if spec is None:
            raise BackendError(f"{artifact.path}: no TensorRT engine here; build one with "
                               f"python -m engines build --checkpoint {artifact.path} --backend tensorrt --out DIR")
        trt = import_tensorrt()
        super().__init__(artifact, precision, "cuda", cuda_graph)
        from engines.engine_spec import gpu_info

        try:
            spec.check_gpu(gpu_info())
            spec.check_file()
        except ArtifactError as exc:
            raise BackendError(str(exc)) from exc
        built_with = spec.versions.get("tensorrt", "?")
        self._logger = trt.Logger(trt.Logger.ERROR)
        self.runtime = trt.Runtime(self._logger)
        self.engine = self.runtime.deserialize_cuda_engine(spec.file_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{spec.file_path}: TensorRT {trt.__version__} cannot load it (built with TensorRT "
                               f"{built_with}; rebuild with python -m engines build)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        expected = {INPUT_IMAGE, INPUT_FILM, INPUT_STRENGTH, OUTPUT_IMAGE}
        if names != expected:
            raise BackendError(f"{spec.file_path}: I/O tensors {sorted(names)} do not match the contract "
                               f"(an engine built before the FiLM-vector graph? rebuild with python -m engines build)")
        want = trt.DataType.HALF if precision == "fp16" else trt.DataType.FLOAT
        for name in expected:
            if self.engine.get_tensor_dtype(name) != want:
                raise BackendError(f"{spec.file_path}: tensor {name} is {self.engine.get_tensor_dtype(name)}, "
                                   f"engine.json says {precision}")
        lo, _, hi = self.engine.get_tensor_profile_shape(INPUT_IMAGE, 0)
        self.profile = Profile((lo[0], lo[2], lo[3]), (lo[0], lo[2], lo[3]), (hi[0], hi[2], hi[3]))
        self.max_batch = int(hi[0])
        self.context = self.engine.create_execution_context()
        self._bound: int | None = None  # id of the slot whose tensors the context points at

    def _check_shape(self, n: int, hp: int, wp: int) -> None:
        if not self.profile.contains(n, hp, wp):
            lo, hi = self.profile.min, self.profile.max
            raise BackendError(f"frame batch {n} at {wp}x{hp} is outside this engine's profile "
                               f"({lo[0]}-{hi[0]} frames, {lo[2]}x{lo[1]} to {hi[2]}x{hi[1]}); rebuild with --dynamic")

    def _network(self, slot: DeviceSlot) -> Any:
        out = slot.extra.get("out")
        if out is None:
            out = slot.extra["out"] = self.torch.empty(slot.image.shape, dtype=self.dtype, device=self.dev)
        if self._bound != id(slot):  # bind once per slot; a CUDA graph replays with these addresses baked in
            ctx = self.context
            for name, t in ((INPUT_IMAGE, slot.image), (INPUT_FILM, slot.film), (INPUT_STRENGTH, slot.strength)):
                ctx.set_input_shape(name, tuple(t.shape))
                ctx.set_tensor_address(name, t.data_ptr())
            ctx.set_tensor_address(OUTPUT_IMAGE, out.data_ptr())
            self._bound = id(slot)
        stream = self.torch.cuda.current_stream(self.dev).cuda_stream
        if not self.context.execute_async_v3(stream):
            raise BackendError("TensorRT failed to enqueue the engine")
        return out

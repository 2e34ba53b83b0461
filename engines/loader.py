"""Opening a back-end: the `auto` policy (which back-end this machine runs fastest) and load_backend.

engines/backends.py holds the interface and the registry; this module picks an entry and imports its
module (engines/backend_*.py) only then, so heavy optional packages load lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from engines.artifact import Artifact, ArtifactError, load_artifact
from engines.backend_onnx import stale_reason
from engines.backends import (
    CPU_RUNTIMES,
    DEFAULT_CPU_PRECISION,
    REGISTRY,
    RUNTIME_MODULE,
    Backend,
    BackendError,
    parse_choice,
)
from engines.engine_spec import ENGINE_FILE, EngineSpec, read_engine
from engines.onnx_export import STAMP_INT8_RUNTIME, read_stamp


def have_module(module: str) -> bool:
    """Whether `module` is installed (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package that fails to import
        return False


def cuda_available() -> bool:
    """A CUDA GPU that torch can use (False without torch, or with a broken CUDA install)."""
    if not have_module("torch"):
        return False  # a serving install without torch (the lean `scripts/serve.sh` set): CPU back-ends only
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install means "no GPU" here, not a crash
        return False


def cpu_runtime() -> str | None:
    """The CPU runtime "auto" uses for ONNX files: the first installed of CPU_RUNTIMES."""
    return next((kind for kind in CPU_RUNTIMES if have_module(RUNTIME_MODULE[kind])), None)


def auto_choice(art: Artifact, allow_gpu: bool = True) -> tuple[str, str]:
    """The fastest back-end this machine can run for a plain model folder (its CPUs only, without allow_gpu)."""
    if allow_gpu and cuda_available():
        return "torch-cuda", "fp16"
    runtime = cpu_runtime()
    if runtime is not None and art.onnx_path.is_file():
        # `python -m engines quantize` keeps an int8 file only when it held the parity floor and ran
        # faster than fp32, and stamps the runtime it was faster on; elsewhere fp32 runs.
        if DEFAULT_CPU_PRECISION == "int8" and art.int8_onnx_path.is_file():
            reason = stale_reason(art, art.int8_onnx_path)
            if reason is None:
                faster_on = read_stamp(art.int8_onnx_path).get(STAMP_INT8_RUNTIME)
                if faster_on in (None, runtime):
                    return runtime, "int8"
            else:
                print(f"engines: note: {reason}; using the fp32 ONNX", file=sys.stderr)
        return runtime, "fp32"
    return "torch", "fp32"


def create_backend(kind: str, precision: str, art: Artifact, spec: EngineSpec | None,
                   threads: int | None) -> Backend:
    """Import the registry entry's module and build its back-end on `art` (and a built engine's `spec`)."""
    info = REGISTRY[kind]
    if precision not in info.precisions:
        raise BackendError(f"back-end {kind} runs {', '.join(info.precisions)}, not {precision}")
    if kind in ("torch", "torch-cuda") and not have_module("torch"):
        raise BackendError(f"the {kind} back-end needs PyTorch, which the serving install leaves out: "
                           "pip install 'stylizer[torch]'")
    module = importlib.import_module(info.module)
    cls = getattr(module, info.cls)
    return cls(art, precision=precision, threads=threads, spec=spec)


def load_backend(path: str | Path | None = None, backend: str = "auto", threads: int | None = None,
                 allow_gpu: bool = True) -> Backend:
    """Open a model folder or a built engine folder (None: the bundled default) on the named back-end.

    For an engine folder (engine.json), "auto" runs what the engine was built for. For a model
    folder, "auto" picks torch-cuda on a CUDA GPU, else OpenVINO where installed, else ONNX Runtime
    (either: int8 where the folder ships a current student.int8.onnx, else fp32), else PyTorch.
    """
    kind, precision = parse_choice(backend)
    p = Path(path) if path is not None else None
    spec = None
    try:
        if p is not None and p.is_file() and p.name == ENGINE_FILE:
            p = p.parent
        if p is not None and (p / ENGINE_FILE).is_file():
            spec = read_engine(p)
        art = load_artifact(p)
        if spec is not None:
            spec.check_matches(art)
    except ArtifactError as exc:
        raise BackendError(str(exc)) from exc
    if kind == "auto":
        kind, precision = (spec.backend, spec.precision) if spec is not None else auto_choice(art, allow_gpu)
    if spec is not None:
        if spec.backend == kind and precision in (None, spec.precision):
            precision = spec.precision
        else:
            spec = None  # the folder is self-contained: another back-end runs from its model files
    if precision is None:
        precision = REGISTRY[kind].precisions[0]
    try:
        if spec is not None:
            spec.check_file()  # a truncated or edited engine file fails here, by hash, not mid-stream
        return create_backend(kind, precision, art, spec, threads)
    except ArtifactError as exc:
        raise BackendError(str(exc)) from exc

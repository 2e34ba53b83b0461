"""`python -m engines build`: a model folder -> a self-contained, self-describing engine folder.

    DIR/engine.json      what runs and what it was built from and on (engines/engine_spec.py)
    DIR/model.json, student.pt, student.onnx, thumbs/   copied or exported from the model folder
    DIR/<the back-end's file>   student.int8.onnx | student.fp16.onnx | student.plan | (student.pt)

A build whose cache key matches the engine.json already in DIR is skipped. After a
build, the engine's parity with the PyTorch FP32 reference is measured where this
machine can run it, recorded in engine.json, and a result under the precision's
floor fails the build (an int8 or fp16 artifact that looks wrong is a bug, not a speed-up).
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engines.artifact import (
    META_FILE,
    ONNX_FILE,
    THUMBS_DIR,
    WEIGHTS_FILE,
    Artifact,
    ArtifactError,
    load_artifact,
    write_film_table,
)
from engines.backends import REGISTRY, BackendError
from engines.contract import padded_size
from engines.engine_spec import (
    ENGINE_FILE,
    ENGINE_FORMAT,
    ENGINE_FORMAT_VERSION,
    cache_key,
    file_sha256,
    gpu_info,
    package_versions,
    read_engine,
    write_engine,
)
from engines.onnx_export import GRAPH_VERSION, export_onnx

BUILDABLE = ("onnx", "openvino", "torch-cuda", "tensorrt")
DEFAULT_MAX_BATCH = 8

Size = tuple[int, int]  # (width, height)


def parse_size(text: str) -> Size:
    """'1280x720' -> (1280, 720)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"bad size {text!r}; expected WIDTHxHEIGHT, e.g. 1280x720") from None
    if w < 1 or h < 1:
        raise ValueError(f"bad size {text!r}; width and height must be positive")
    return w, h


def parse_dynamic(text: str) -> tuple[Size, Size, Size]:
    """'640x360:1280x720:1920x1080' -> (min, opt, max), each no smaller than the one before."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"bad --dynamic {text!r}; expected MIN:OPT:MAX, e.g. 640x360:1280x720:1920x1080")
    lo, opt, hi = (parse_size(p) for p in parts)
    if not (lo[0] <= opt[0] <= hi[0] and lo[1] <= opt[1] <= hi[1]):
        raise ValueError(f"bad --dynamic {text!r}; need MIN <= OPT <= MAX in both width and height")
    return lo, opt, hi


@dataclass(frozen=True)
class BuildConfig:
    checkpoint: Path
    backend: str
    precision: str
    size: Size
    out: Path
    dynamic: tuple[Size, Size, Size] | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    force: bool = False
    check: bool = True
    timing_cache: Path | None = None


def resolve_checkpoint(path: Path) -> Artifact:
    """A model folder, its model.json, or its student.pt."""
    p = Path(path)
    if p.is_file() and p.name == WEIGHTS_FILE:
        p = p.parent
    return load_artifact(p)


def profile_of(cfg: BuildConfig, multiple: int) -> dict[str, list[int]]:
    """(N, H, W) min/opt/max, sizes padded to the contract's multiple."""
    def nhw(n: int, size: Size) -> list[int]:
        h, w = padded_size(size[1], size[0], multiple)
        return [n, h, w]

    lo, opt, hi = cfg.dynamic or (cfg.size, cfg.size, cfg.size)
    return {"min": nhw(1, lo), "opt": nhw(1, opt), "max": nhw(cfg.max_batch, hi)}


def _log(msg: str) -> None:
    print(f"engines: {msg}", file=sys.stderr, flush=True)


def _copy_model(art: Artifact, out: Path) -> None:
    """The engine folder carries the model's own files, so it can be served (thumbnails) and re-built alone."""
    for name in (META_FILE, WEIGHTS_FILE):
        shutil.copy2(art.path / name, out / name)
    write_film_table(art.load_student(), out, art.weights_sha256)
    thumbs = art.path / THUMBS_DIR
    if thumbs.is_dir():
        shutil.copytree(thumbs, out / THUMBS_DIR, dirs_exist_ok=True)


def _default_timing_cache(gpu: dict[str, str] | None, versions: dict[str, str]) -> Path:
    cap = (gpu or {}).get("capability", "none").replace(".", "")
    return Path.home() / ".cache" / "stylizer" / f"tensorrt-{versions.get('tensorrt')}-sm{cap}.timing"


def _produce(cfg: BuildConfig, art: Artifact, out: Path, profile: dict[str, list[int]],
             gpu: dict[str, str] | None, versions: dict[str, str]) -> str:
    """Write the back-end's own file into `out`; returns its name."""
    kind, precision = cfg.backend, cfg.precision
    net = art.load_student()
    if kind == "torch-cuda":
        return WEIGHTS_FILE
    if kind in ("onnx", "openvino") and precision in ("fp32", "bf16"):
        return ONNX_FILE
    if precision == "int8":
        from engines.parity import calibration_frames
        from engines.quantize import quantize_int8

        _log("int8: calibrating on the bundled real frames and choosing the convs by sensitivity "
             "(up to a few minutes on 2 cores)")
        try:
            plan = quantize_int8(out / ONNX_FILE, out / "student.int8.onnx", art.style_bank(), calibration_frames(),
                                 weights_sha256=art.weights_sha256)
        except ValueError as exc:
            raise BackendError(f"int8: {exc}") from None
        _log(f"int8: {plan.summary()}")
        return "student.int8.onnx"
    if precision == "fp16":
        fp16 = "student.fp16.onnx"
        export_onnx(net, art.contract, out / fp16, half=True, weights_sha256=art.weights_sha256)
        if kind == "onnx":
            return fp16
        onnx_in = out / fp16
    else:
        onnx_in = out / ONNX_FILE
    # TensorRT: the ONNX parser and builder need TensorRT and the GPU the engine is for.
    from engines.backend_tensorrt import PLAN_FILE, Profile, build_plan

    if gpu is None:
        raise BackendError("building a TensorRT engine needs the CUDA GPU it will run on; none is visible")
    cache = cfg.timing_cache or _default_timing_cache(gpu, versions)
    cache.parent.mkdir(parents=True, exist_ok=True)
    p = Profile(*(tuple(profile[k]) for k in ("min", "opt", "max")))  # type: ignore[arg-type]
    _log(f"tensorrt: building {precision} for {gpu['name']} (timing cache {cache})")
    build_plan(onnx_in, out / PLAN_FILE, p, art.style_bank().width, timing_cache=cache)
    return PLAN_FILE


def _check_parity(out: Path, precision: str, size: Size) -> dict | None:
    """Parity of the built engine vs PyTorch FP32, or None where this machine cannot run it."""
    from engines.loader import load_backend
    from engines.parity import THRESHOLD_DB, measure, parity_frames, parity_mixes

    try:
        engine = load_backend(out)
    except BackendError as exc:
        _log(f"parity: not measured here ({exc})")
        return None
    reference = load_backend(out, "torch")
    w, h = size
    # Parity at the build size, capped at 640x360 on the CPU (the torch reference is slow there).
    if engine.device == "cpu" and w * h > 640 * 360:
        w, h = 640, 360
    frames = parity_frames(h - h % 2, w - w % 2)
    result = measure(engine, reference, frames, parity_mixes(engine.contract))
    engine.close()
    floor = THRESHOLD_DB[precision]
    _log(f"parity vs PyTorch FP32 at {w}x{h}: {result} (floor {floor:.0f} dB)")
    if not result.ok(precision):
        raise BackendError(f"{engine.name} parity {result.min_db:.1f} dB at {result.worst} is under the "
                           f"{floor:.0f} dB floor for {precision}; not keeping this engine")
    return {"min_db": round(result.min_db, 2), "mean_db": round(result.mean_db, 2), "size": [w, h],
            "frames": len(frames), "floor_db": floor}


def build(cfg: BuildConfig) -> tuple[Path, bool]:
    """Build (or find up to date) the engine; returns (folder, built_now)."""
    if cfg.backend not in BUILDABLE:
        raise BackendError(f"cannot build back-end {cfg.backend!r}; choose one of: {', '.join(BUILDABLE)}")
    if cfg.precision not in REGISTRY[cfg.backend].precisions:
        raise BackendError(f"back-end {cfg.backend} builds {', '.join(REGISTRY[cfg.backend].precisions)}, "
                           f"not {cfg.precision}")
    if cfg.max_batch < 1:
        raise BackendError("--max-batch must be at least 1")
    try:
        art = resolve_checkpoint(cfg.checkpoint)
    except ArtifactError as exc:
        raise BackendError(str(exc)) from exc
    out = cfg.out.resolve()
    if out == art.path.resolve():
        raise BackendError(f"--out {cfg.out} is the model folder itself; choose a new folder")
    if out.exists() and not out.is_dir():
        raise BackendError(f"--out {cfg.out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / ENGINE_FILE).is_file() and not cfg.force:
        raise BackendError(f"--out {cfg.out} is a non-empty folder without {ENGINE_FILE}; pass --force to use it")
    if cfg.backend == "openvino" and cfg.precision == "bf16":
        from engines.backend_openvino import bf16_supported

        if not bf16_supported():
            raise BackendError("openvino bf16 needs OpenVINO on a CPU with native bf16 (AVX512-BF16 or AMX)")

    versions = package_versions()
    gpu = gpu_info() if cfg.backend == "tensorrt" else None  # only TensorRT plans are tied to one GPU
    profile = profile_of(cfg, art.contract.size_multiple)
    meta: dict = {
        "format": ENGINE_FORMAT, "format_version": ENGINE_FORMAT_VERSION,
        "backend": cfg.backend, "precision": cfg.precision,
        "size": list(cfg.size), "profile": profile, "graph": GRAPH_VERSION,
        "contract": art.contract.to_dict(), "student_config": art.config.to_dict(),
        "style_names": list(art.contract.style_names), "weights_sha256": art.weights_sha256,
        "versions": versions, "gpu": gpu,
    }
    key = cache_key(meta)
    if not cfg.force and (out / ENGINE_FILE).is_file():
        try:
            old = read_engine(out)
            old.check_file()
            if old.cache_key == key:
                _log(f"{out}: up to date (cache key {key[:16]})")
                return out, False
        except ArtifactError:
            pass  # unreadable or stale: rebuild over it
    out.mkdir(parents=True, exist_ok=True)
    (out / ENGINE_FILE).unlink(missing_ok=True)  # the folder is incomplete until engine.json is back
    t0 = time.perf_counter()
    _copy_model(art, out)
    export_onnx(art.load_student(), art.contract, out / ONNX_FILE, weights_sha256=art.weights_sha256)
    file = _produce(cfg, art, out, profile, gpu, versions)
    meta.update({
        "file": file, "file_sha256": file_sha256(out / file), "cache_key": key,
        "model": {"path": str(art.path), "provenance": art.meta.get("provenance", {})},
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_seconds": round(time.perf_counter() - t0, 1),
    })
    write_engine(out, meta)
    if cfg.check:
        try:
            parity = _check_parity(out, cfg.precision, cfg.size)
        except BackendError:
            (out / ENGINE_FILE).unlink(missing_ok=True)
            raise
        if parity is not None:
            meta["parity"] = parity
            write_engine(out, meta)
    _log(f"{out}: built {cfg.backend}-{cfg.precision} ({file}) in {meta['build_seconds']} s, cache key {key[:16]}")
    return out, True

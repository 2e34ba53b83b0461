"""`python -m engines`: build engines, refresh a model folder's ONNX/int8 files, describe, benchmark on a GPU."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from engines.backends import PRECISIONS, REGISTRY, BackendError


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from engines.build import BUILDABLE, DEFAULT_MAX_BATCH
    from engines.quantize import SELECTION_MARGIN_DB

    parser = _Parser(prog="python -m engines", description="Build and inspect stylizer engines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build an engine folder for one back-end and precision",
                       description="Build a self-contained engine folder (engine.json + the model's files + the "
                                   "back-end's file). Skipped when DIR already holds an engine with the same cache key.")
    b.add_argument("--checkpoint", required=True, type=Path, metavar="STUDENT",
                   help="model folder (model.json + student.pt), its model.json or its student.pt")
    b.add_argument("--backend", required=True, metavar="{" + ",".join(BUILDABLE) + "}",
                   help="what the engine runs on")
    b.add_argument("--precision", required=True, metavar="{" + ",".join(PRECISIONS) + "}",
                   help="fp32 | fp16 (tensorrt, torch-cuda, onnx on CUDA) | bf16 (openvino) | int8 (onnx, openvino)")
    b.add_argument("--size", default="1280x720", metavar="WxH", help="frame size to tune for (default 1280x720)")
    b.add_argument("--dynamic", default=None, metavar="MIN:OPT:MAX",
                   help="size range, e.g. 640x360:1280x720:1920x1080 (TensorRT profile; default: --size only)")
    b.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                   help=f"largest batch the engine takes (default {DEFAULT_MAX_BATCH})")
    b.add_argument("--out", required=True, type=Path, metavar="DIR", help="engine folder to write")
    b.add_argument("--force", action="store_true", help="rebuild even when up to date")
    b.add_argument("--no-check", action="store_true", help="skip the parity check after building")
    b.add_argument("--timing-cache", type=Path, default=None,
                   help="TensorRT timing cache file (default ~/.cache/stylizer/tensorrt-VERSION-smXY.timing)")

    q = sub.add_parser("quantize", help="re-export a model folder's student.onnx and write student.int8.onnx",
                       description="Re-export MODEL/student.onnx (the fused inference graph, stamped with the weights "
                                   "hash) and calibrate MODEL/student.int8.onnx on the bundled real frames, "
                                   "quantizing the convs a sensitivity pass allows; prints parity against PyTorch "
                                   "FP32 (an int8 file under the floor is removed) and the int8 speed-up (a file "
                                   "that is not faster than fp32 is removed).")
    q.add_argument("model", nargs="?", type=Path, default=None, help="model folder (default: the bundled model)")
    q.add_argument("--no-int8", action="store_true", help="only re-export student.onnx")
    q.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                   help="calibrate and choose the int8 convs on the JPEG/PNG frames in DIR (up to 24, spread "
                        "evenly) instead of the bundled ones; the parity gate still uses the bundled frames")
    q.add_argument("--margin", type=float, default=None, metavar="DB",
                   help="how far above the int8 floor the chosen convs must score against FP32 on the "
                        f"calibration frames (default {SELECTION_MARGIN_DB})")
    q.add_argument("--no-speed-check", action="store_true",
                   help="keep the int8 file even where it is not faster than fp32 (auto then prefers it everywhere)")

    i = sub.add_parser("info", help="describe a model or engine folder")
    i.add_argument("path", type=Path)

    g = sub.add_parser("bench-gpu", help="GPU benchmark: network, full yuv path, batch 8 (needs CUDA)")
    g.add_argument("--engine", default=None, help="model or engine folder (default: the bundled model)")
    g.add_argument("--backends", default="torch-cuda-fp16,torch-cuda-fp32",
                   help="comma-separated back-ends (default torch-cuda-fp16,torch-cuda-fp32; add tensorrt with an "
                        "engine folder)")
    g.add_argument("--frames", type=int, default=200, help="timed frames per row (default 200)")
    g.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start)")
    g.add_argument("--record", default=None, metavar="FILE", help="append the table to this markdown file")
    return parser


def _quantize(model: Path | None, int8: bool, calibration: Path | None = None, margin: float | None = None,
              speed_check: bool = True) -> int:
    from engines.artifact import load_artifact, write_film_table
    from engines.loader import cpu_runtime, load_backend
    from engines.onnx_export import STAMP_INT8_RUNTIME, export_onnx, stamp
    from engines.parity import THRESHOLD_DB, calibration_frames, measure, parity_frames, parity_mixes
    from engines.quantize import INT8_MIN_SPEEDUP, SELECTION_MARGIN_DB, int8_speedup, quantize_int8

    art = load_artifact(model)
    net = art.load_student()
    export_onnx(net, art.contract, art.onnx_path, weights_sha256=art.weights_sha256)
    write_film_table(net, art.path, art.weights_sha256)
    print(f"engines: wrote {art.onnx_path} and {art.film_path.name}", file=sys.stderr)
    if int8:
        tmp = art.path / "student.int8.onnx.new"
        frames = calibration_frames(calibration, limit=24) if calibration else calibration_frames()
        try:
            plan = quantize_int8(art.onnx_path, tmp, art.style_bank(), frames, weights_sha256=art.weights_sha256,
                                 margin_db=SELECTION_MARGIN_DB if margin is None else margin)
        except ValueError as exc:
            art.int8_onnx_path.unlink(missing_ok=True)
            raise BackendError(f"int8: {exc}; no int8 file (auto runs fp32)") from None
        print(f"engines: int8: {plan.summary()}", file=sys.stderr)
        tmp.replace(art.int8_onnx_path)
        print(f"engines: wrote {art.int8_onnx_path}", file=sys.stderr)
    runtimes = ["onnx", *(["openvino"] if cpu_runtime() == "openvino" else [])]
    names = [f"{r}-{p}" for r in runtimes for p in (("fp32", "int8") if int8 else ("fp32",))]
    ref = load_backend(art.path, "torch")
    frames, mixes = parity_frames(), parity_mixes(art.contract)
    for name in names:
        res = measure(load_backend(art.path, name), ref, frames, mixes)
        precision = name.rsplit("-", 1)[1]
        verdict = "ok" if res.ok(precision) else f"UNDER the {THRESHOLD_DB[precision]:.0f} dB floor"
        print(f"{name}: parity vs PyTorch FP32 at 640x360: {res} -> {verdict}")
        if not res.ok(precision):
            if precision == "int8":
                art.int8_onnx_path.unlink()
            raise BackendError(f"{name} parity {res.min_db:.1f} dB is under the floor; file removed")
    if int8 and speed_check:
        # An int8 file is only worth its quality loss where it is faster: "auto" runs it only on the
        # runtime it was measured faster on (stamped into the file), else the fp32 graph.
        runtime = cpu_runtime() or "onnx"
        speedup = int8_speedup(art, runtime)
        print(f"{runtime}-int8 vs {runtime}-fp32 at 640x360, one thread, interleaved: {speedup:.2f}x")
        if speedup < INT8_MIN_SPEEDUP:
            art.int8_onnx_path.unlink()
            print(f"engines: int8 is not {INT8_MIN_SPEEDUP:.2f}x faster than fp32 on {runtime}; file removed "
                  "(auto runs fp32)", file=sys.stderr)
            return 0
        stamp(art.int8_onnx_path, **{STAMP_INT8_RUNTIME: runtime})
    return 0


def _info(path: Path) -> int:
    from engines.artifact import load_artifact
    from engines.engine_spec import ENGINE_FILE, read_engine

    art = load_artifact(path)
    out = {"model": str(art.path), "styles": list(art.contract.style_names), "weights_sha256": art.weights_sha256,
           "onnx": art.onnx_path.is_file(), "int8_onnx": art.int8_onnx_path.is_file()}
    if (Path(path) / ENGINE_FILE).is_file():
        spec = read_engine(path)
        spec.check_matches(art)
        out.update({k: spec.meta.get(k) for k in ("backend", "precision", "file", "size", "profile", "versions", "gpu",
                                                  "cache_key", "parity", "created")})
    print(json.dumps(out, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engines.artifact import ArtifactError

    try:
        if args.command == "build":
            from engines.build import BuildConfig, build, parse_dynamic, parse_size

            if args.backend not in REGISTRY:
                raise BackendError(f"unknown back-end {args.backend!r}; choose one of: tensorrt, torch-cuda, onnx, "
                                   "openvino")
            if args.precision not in PRECISIONS:
                raise BackendError(f"unknown precision {args.precision!r}; choose one of: {', '.join(PRECISIONS)}")
            try:
                size = parse_size(args.size)
                dynamic = parse_dynamic(args.dynamic) if args.dynamic else None
            except ValueError as exc:
                raise BackendError(str(exc)) from None
            cfg = BuildConfig(checkpoint=args.checkpoint, backend=args.backend, precision=args.precision, size=size,
                              out=args.out, dynamic=dynamic, max_batch=args.max_batch, force=args.force,
                              check=not args.no_check, timing_cache=args.timing_cache)
            out, _ = build(cfg)
            print(out)
            return 0
        if args.command == "quantize":
            return _quantize(args.model, not args.no_int8, args.calibration, args.margin, not args.no_speed_check)
        if args.command == "info":
            return _info(args.path)
        if args.command == "bench-gpu":
            from engines.bench_gpu import run_bench_gpu

            return run_bench_gpu(args)
    except (BackendError, ArtifactError) as exc:
        print(f"engines: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

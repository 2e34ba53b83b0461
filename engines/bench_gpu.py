"""`python -m engines bench-gpu`: what the GPU back-ends cost, in one compact table.

Per back-end and size:
    net ms       the network alone, batch 1, input already on the device (CUDA events, graph replay)
    full ms      host yuv420p in -> upload -> yuv->RGB -> network -> caption overlay -> RGB->yuv -> download
                 -> host yuv420p out, batch 1, wall clock per frame (p50 and p95)
    net fps b8   network alone at batch 8, frames per second
    full fps b8  the full path at batch 8, frames per second
Needs only torch (+ the back-end's own package): no PyAV or aiortc, so it runs on a bare GPU machine.
Targets (H100, 1280x720): net < 1 ms, full < 3 ms, batch 8 > 2000 frames/s.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engines.backends import Backend, BackendError
from engines.loader import load_backend

SIZES = ((640, 360), (1280, 720), (1920, 1080))
BATCH = 8


@dataclass
class Patch:
    """A caption-like premultiplied RGBA patch (the same fields as realtime.expression.overlay.Sprite)."""

    x: int
    y: int
    rgb: np.ndarray
    alpha: np.ndarray


def caption_patch(width: int, height: int) -> Patch:
    """White text on a dark band near the bottom, about the size the live captions are."""
    from PIL import Image, ImageDraw

    pw, ph = int(width * 0.8), max(16, int(height * 0.1))
    img = Image.new("RGBA", (pw, ph), (0, 0, 0, 160))
    ImageDraw.Draw(img).text((8, ph // 4), "Live stylizer benchmark caption", fill=(255, 255, 255, 255))
    rgba = np.asarray(img, np.float32) / 255.0
    alpha = rgba[..., 3:4]
    return Patch(x=(width - pw) // 2, y=height - ph - height // 20, rgb=rgba[..., :3] * alpha * 255.0, alpha=alpha)


def yuv_clip(width: int, height: int, frames: int = 8) -> list[np.ndarray]:
    """Camera-like frames as packed yuv420p (gradient, moving block, noise)."""
    from engines.yuv import rgb_to_yuv420p_numpy

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for i in range(frames):
        rgb = np.stack([xx / width * 200 + 30, yy / height * 180 + 40, np.full_like(xx, 120.0)], -1)
        x0 = int(width * (0.2 + 0.05 * i))
        rgb[height // 3 : height // 2, x0 : x0 + width // 6] = (220, 180, 150)
        rgb += rng.normal(0, 4, rgb.shape)
        out.append(rgb_to_yuv420p_numpy(np.clip(rgb, 0, 255).astype(np.uint8)))
    return out


@dataclass
class Row:
    backend: str
    size: tuple[int, int]
    net_ms: float
    full_p50: float
    full_p95: float
    net_fps_b8: float
    full_fps_b8: float


def _time_network(backend: Backend, n: int, w: int, h: int, frames: int) -> float:
    """ms per call of the network alone (device-resident input), by CUDA events."""
    import torch

    step = backend.network_step(n, h, w)  # type: ignore[attr-defined]
    for _ in range(20 if backend.device == "cuda" else 1):
        step()
    if backend.device != "cuda":  # the CPU run of the device path (tests): wall clock
        t0 = time.perf_counter()
        for _ in range(frames):
            step()
        return (time.perf_counter() - t0) * 1e3 / frames
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(frames):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / frames


def _time_full(backend: Backend, clip: list[np.ndarray], n: int, frames: int, patch: Patch) -> list[float]:
    """Wall-clock ms per call of the host-to-host yuv path."""
    vec = backend.contract.weights_vector({backend.style_names[0]: 0.7, backend.style_names[-1]: 0.3})
    batch = np.stack([clip[i % len(clip)] for i in range(n)])
    dest = np.empty_like(batch)
    for _ in range(10 if backend.device == "cuda" else 1):
        backend.stylize_yuv420p_batch(batch, vec, 1.0, patch, out=dest)  # type: ignore[attr-defined]
    lat = []
    for i in range(frames):
        batch[0] = clip[i % len(clip)]  # a new frame each call, as a camera gives
        t0 = time.perf_counter()
        backend.stylize_yuv420p_batch(batch, vec, 1.0, patch, out=dest)  # type: ignore[attr-defined]
        lat.append((time.perf_counter() - t0) * 1e3)
    return lat


def bench(backend: Backend, size: tuple[int, int], frames: int) -> Row:
    w, h = size
    clip, patch = yuv_clip(w, h), caption_patch(w, h)
    net = _time_network(backend, 1, w, h, frames)
    full = _time_full(backend, clip, 1, frames, patch)
    net8 = _time_network(backend, BATCH, w, h, max(1, frames // 4))
    full8 = _time_full(backend, clip, BATCH, max(1, frames // 8), patch)
    return Row(backend.name, size, net, float(np.percentile(full, 50)), float(np.percentile(full, 95)),
               BATCH * 1e3 / net8, BATCH * 1e3 / float(np.median(full8)))


def table(card: str, rows: list[Row]) -> str:
    lines = [f"| card | back-end | size | net ms b1 | full yuv ms b1 p50 | p95 | net fps b{BATCH} | full fps b{BATCH} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {card} | {r.backend} | {r.size[0]}x{r.size[1]} | {r.net_ms:.3f} | {r.full_p50:.2f} | "
                     f"{r.full_p95:.2f} | {r.net_fps_b8:.0f} | {r.full_fps_b8:.0f} |")
    return "\n".join(lines)


def run_bench_gpu(args: argparse.Namespace) -> int:
    import torch

    if not torch.cuda.is_available():
        raise BackendError("bench-gpu needs a CUDA GPU; torch sees none")
    card = torch.cuda.get_device_name()
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    if args.compile and "torch-cuda-fp16-compiled" not in names:
        names.append("torch-cuda-fp16-compiled")
    rows: list[Row] = []
    t_start = time.perf_counter()
    for name in names:
        compiled = name.endswith("-compiled")
        try:
            if compiled:
                from engines.artifact import load_artifact
                from engines.backend_torch_cuda import TorchCudaBackend

                backend: Backend = TorchCudaBackend(load_artifact(args.engine), "fp16", compile=True)
            else:
                backend = load_backend(args.engine, name)
        except BackendError as exc:
            print(f"bench-gpu: skipping {name}: {exc}", file=sys.stderr)
            continue
        sizes = ((1280, 720),) if compiled else SIZES  # compiling every size would take minutes
        for size in sizes:
            print(f"bench-gpu: {backend.name} {size[0]}x{size[1]} ({time.perf_counter() - t_start:.0f} s)",
                  file=sys.stderr, flush=True)
            rows.append(bench(backend, size, args.frames))
        backend.close()
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"### engines bench-gpu, {now}\n\nMachine: {card}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
             f"{platform.processor() or platform.machine()}. {args.frames} timed frames per batch-1 row. "
             f"Targets (H100, 1280x720): net < 1 ms, full < 3 ms, batch {BATCH} > 2000 frames/s.\n\n"
             + table(card, rows))
    print(block)
    if args.record:
        path = Path(args.record)
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", encoding="utf-8") as f:  # realtime.benches.bench.record's format, without importing PyAV
            if new:
                f.write("# Benchmarks\n\nAppended by `realtime bench --record` and `python -m engines bench-gpu "
                        "--record`. Numbers depend on the machine and its load.\n")
            f.write("\n" + block + "\n")
        print(f"bench-gpu: appended to {path}", file=sys.stderr)
    return 0

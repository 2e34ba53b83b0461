"""`realtime bench`: fps and latency of the network alone and of the whole live per-frame path.

Network-only rows cover every back-end asked for (`--engine` folders x `--backend`/`--compare`),
every `--sizes` size and every `--batch` size; at 640x360 batch 1 each carries its speed ratio
to PyTorch eager FP32 on the same weights, timed interleaved in the same run so machine load
cancels out of the ratio.

The live path is measured stage by stage on what the server really does with each
frame: VP8 decode -> yuv420p to RGB -> network -> caption overlay -> RGB to yuv420p
-> VP8 encode (aiortc's own encoder). Input is a synthetic but camera-like clip
(smooth light, moving shapes, texture, sensor noise), because a flat or static frame
makes the codecs unrealistically cheap. Nothing here asserts a time; it only reports.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np

from engines.backends import Backend, BackendError, default_threads
from engines.loader import load_backend
from realtime.pipeline import FramePipeline, StageTimes, StyleState

SIZES = ((640, 360), (1280, 720), (1920, 1080))
PIPELINE_SIZES = ((640, 360), (1280, 720))
RATIO_SIZE = (640, 360)  # where the speed ratio to PyTorch eager FP32 is measured
CLIP_FRAMES = 30  # distinct frames, cycled; enough motion that VP8 inter frames carry real work
CAPTION = "Live stylizer 你好 こんにちは"
STAGES = ("decode", "to rgb", "network", "overlay", "to yuv", "encode")
VIDEO_TIME_BASE = Fraction(1, 90000)  # RTP video clock, as aiortc uses


@dataclass
class Row:
    mode: str
    size: tuple[int, int]
    backend: str
    fps: float  # frames per second (a batch of N counts N frames)
    p50: float
    p95: float
    stages: dict[str, float] = field(default_factory=dict)  # per-stage p50 in ms
    vs_torch: str = ""
    batch: int = 1  # p50/p95 are per call, i.e. per batch


# ---------------------------------------------------------------- input


def synthetic_clip(width: int, height: int, frames: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Camera-like RGB frames: lit gradient background, soft texture, moving shapes, a little noise."""
    frames = frames or CLIP_FRAMES
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / width, yy / height
    base = np.stack([0.55 + 0.35 * u, 0.45 + 0.3 * v, 0.6 - 0.3 * u * v], -1) * 255
    # Low-frequency texture (walls, clothes): small noise upsampled bilinearly.
    from PIL import Image

    small = rng.normal(0, 1, (height // 24 + 2, width // 24 + 2)).astype(np.float32)
    texture = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))
    base += 18 * texture[..., None]
    noise = rng.normal(0, 3, (height, width + frames, 3)).astype(np.float32)  # sensor noise, shifted per frame
    out = []
    for i in range(frames):
        img = base.copy()
        phase = 2 * np.pi * i / frames
        # A "face": a bright ellipse drifting left-right, plus a darker block moving vertically.
        cx, cy = width * (0.5 + 0.2 * np.sin(phase)), height * 0.45
        face = ((xx - cx) / (0.12 * width)) ** 2 + ((yy - cy) / (0.25 * height)) ** 2 < 1
        img[face] = img[face] * 0.3 + np.array([225, 180, 150], np.float32) * 0.7
        bx, by = int(width * 0.1), int(height * (0.3 + 0.2 * np.cos(phase)))
        img[by : by + height // 4, bx : bx + width // 6] *= 0.35
        img += noise[:, i : i + width]
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def vp8_packets(clip: list[np.ndarray]) -> list:
    """The clip as a browser would send it: VP8, first frame a keyframe (so the cycle restarts cleanly)."""
    import av

    h, w = clip[0].shape[:2]
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = VIDEO_TIME_BASE
    enc.bit_rate = 1_500_000
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets = []
    for i, rgb in enumerate(clip):
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = i * 3000, VIDEO_TIME_BASE
        packets += enc.encode(f)
    packets += enc.encode(None)
    return packets


# ---------------------------------------------------------------- measurements


def _ms(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def _batches(clip: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """The clip cut into (batch, H, W, 3) arrays, cycling so every batch is full."""
    n = max(1, len(clip) // batch)
    return [np.stack([clip[(i * batch + j) % len(clip)] for j in range(batch)]) for i in range(n)]


def bench_network(backend: Backend, clip: list[np.ndarray], frames: int, warmup: int, batch: int = 1) -> Row:
    """`frames` calls of the back-end on `batch` frames each (caller-owned output, as the live path uses)."""
    vec = backend.contract.weights_vector({backend.style_names[0]: 1.0})
    batches = _batches(clip, batch)
    out = np.empty_like(batches[0])
    for i in range(warmup):
        backend.stylize_batch(batches[i % len(batches)], vec, 1.0, out=out)
    lat = []
    start = time.perf_counter()
    for i in range(frames):
        t0 = time.perf_counter()
        backend.stylize_batch(batches[i % len(batches)], vec, 1.0, out=out)
        lat.append((time.perf_counter() - t0) * 1e3)
    total = time.perf_counter() - start
    h, w = clip[0].shape[:2]
    return Row("network only", (w, h), backend.name, frames * batch / total, *_ms(lat), batch=batch)


def speed_ratio(backend: Backend, reference: Backend, clip: list[np.ndarray], frames: int) -> float:
    """reference time / backend time, batch 1, from alternating short runs (load hits both alike)."""
    vec = backend.contract.weights_vector({backend.style_names[0]: 1.0})
    rounds = max(3, min(10, frames // 5))
    chunk = max(1, frames // rounds)
    per: dict[int, list[float]] = {0: [], 1: []}
    for b in (backend, reference):
        b.stylize(clip[0], vec, 1.0)
    for r in range(rounds):
        order = ((0, backend), (1, reference)) if r % 2 == 0 else ((1, reference), (0, backend))
        for k, b in order:
            t0 = time.perf_counter()
            for i in range(chunk):
                b.stylize(clip[(r * chunk + i) % len(clip)], vec, 1.0)
            per[k].append((time.perf_counter() - t0) / chunk)
    return float(np.median(per[1]) / np.median(per[0]))


def bench_pipeline(backend: Backend, clip: list[np.ndarray], frames: int, warmup: int) -> Row:
    import av
    from aiortc.codecs.vpx import Vp8Encoder

    packets = vp8_packets(clip)
    decoder = av.CodecContext.create("libvpx", "r")
    encoder = Vp8Encoder()
    names = backend.style_names
    pipe = FramePipeline(backend, StyleState(weights={names[0]: 1.0}, caption=CAPTION))
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    lat = []
    start = 0.0
    for i in range(warmup + frames):
        if i == warmup:  # forget warm-up: fresh rings sized to hold every timed frame
            stages = {s: [] for s in STAGES}
            pipe.times = StageTimes(size=frames)
            lat = []
            start = time.perf_counter()
        t0 = time.perf_counter()
        decoded = decoder.decode(packets[i % len(packets)])
        t1 = time.perf_counter()
        for frame in decoded:  # libvpx gives exactly one frame per packet here (no lag)
            rgb = frame.to_ndarray(format="rgb24")
            t2 = time.perf_counter()
            out = pipe.process(rgb)
            t3 = time.perf_counter()
            yuv = av.VideoFrame.from_ndarray(out, format="rgb24").reformat(format="yuv420p")
            yuv.pts, yuv.time_base = i * 3000, VIDEO_TIME_BASE
            t4 = time.perf_counter()
            encoder.encode(yuv)
            t5 = time.perf_counter()
            stages["decode"].append((t1 - t0) * 1e3)
            stages["to rgb"].append((t2 - t1) * 1e3)
            stages["to yuv"].append((t4 - t3) * 1e3)
            stages["encode"].append((t5 - t4) * 1e3)
            lat.append((t5 - t0) * 1e3)
    total = time.perf_counter() - start
    p50s = {s: float(np.median(v)) for s, v in stages.items() if v}
    p50s["network"], p50s["overlay"] = pipe.times.p50("network"), pipe.times.p50("overlay")
    h, w = clip[0].shape[:2]
    return Row("full pipeline", (w, h), backend.name, len(lat) / total, *_ms(lat), stages=p50s)


# ---------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    """An installed package's version, read from its metadata: importing torch only for this costs seconds."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def header(backends: list[Backend], threads: int, frames: int, warmup: int) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load avg {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    models = sorted({f"{b.artifact.path.name} (weights {b.artifact.weights_sha256[:12]})" for b in backends})
    gpu = ""
    if any(b.device == "cuda" for b in backends):
        import torch

        gpu = f" GPU: {torch.cuda.get_device_name()}."
    return (
        f"### realtime bench, {now}\n\n"
        f"Machine: {cpu_model()}, {cores} cores{load}.{gpu} "
        f"torch {_version('torch')}, onnxruntime {_version('onnxruntime')}, openvino {_version('openvino')}, "
        f"av {_version('av')}. "
        f"Back-ends: {', '.join(b.name for b in backends)}; {threads} threads. Model: {', '.join(models)}. "
        f"{frames} timed calls per row after {warmup} warm-up (a batch-N call is N frames; p50/p95 are per call); "
        f"caption on in the full pipeline. 'vs torch FP32': speed ratio to PyTorch eager FP32 on the same "
        f"weights at {RATIO_SIZE[0]}x{RATIO_SIZE[1]}, timed interleaved."
    )


def table(rows: list[Row]) -> str:
    cols = ["mode", "size", "back-end", "batch", "fps", "p50 ms", "p95 ms", *(f"{s} p50" for s in STAGES),
            "vs torch FP32"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        stage = [f"{r.stages[s]:.1f}" if s in r.stages else "" for s in STAGES]
        cells = [r.mode, f"{r.size[0]}x{r.size[1]}", r.backend, str(r.batch), f"{r.fps:.1f}", f"{r.p50:.1f}",
                 f"{r.p95:.1f}", *stage, r.vs_torch]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record(path: Path, block: str) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", encoding="utf-8") as f:
        if new:
            f.write("# Benchmarks\n\nAppended by `realtime bench --record`. "
                    "Numbers depend on the machine and its load.\n")
        f.write("\n" + block + "\n")


def _sizes(text: str) -> list[tuple[int, int]]:
    if text.strip().lower() == "none":
        return []
    out = []
    for part in text.split(","):
        w, _, h = part.strip().lower().partition("x")
        if not (w.isdigit() and h.isdigit()) or int(w) < 2 or int(h) < 2:
            raise BackendError(f"bad size {part!r}; expected WIDTHxHEIGHT, e.g. 1280x720")
        out.append((int(w), int(h)))
    return out


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise BackendError(f"bad --batch {text!r}; expected positive integers, e.g. 1,8")
    return values


def run_bench(args: argparse.Namespace) -> int:
    if args.frames < 1:
        print("realtime: error: --frames must be at least 1", file=sys.stderr)
        return 2
    threads = args.threads or default_threads()
    sizes, pipeline_sizes, batches = _sizes(args.sizes), _sizes(args.pipeline_sizes), _ints(args.batch)
    engines = args.engine if isinstance(args.engine, list) else [args.engine]
    names = [args.backend, *(n.strip() for n in args.compare.split(",") if n.strip())]
    backends: list[tuple[str, Backend]] = []  # (row label, back-end)
    references: dict[str, Backend | None] = {}  # one torch FP32 reference per weights hash
    for engine in engines:
        for name in names:
            b = load_backend(engine, name, threads)
            backends.append((f"{b.name} ({b.artifact.path.name})" if len(engines) > 1 else b.name, b))
            sha = b.artifact.weights_sha256
            if sha not in references:
                try:
                    references[sha] = b if b.name == "torch" else load_backend(engine, "torch", threads)
                except BackendError as exc:  # the comparison is extra; the main rows still stand
                    print(f"bench: note: no torch FP32 reference ({exc})", file=sys.stderr)
                    references[sha] = None
    frames, warmup = args.frames, max(3, min(20, args.frames // 5))

    rows: list[Row] = []
    for w, h in dict.fromkeys([*sizes, *pipeline_sizes]):
        clip = synthetic_clip(w, h)
        for label, b in backends if (w, h) in sizes else []:
            for n in batches:
                print(f"bench: {w}x{h} network only, {label}, batch {n}", file=sys.stderr)
                row = bench_network(b, clip, frames, max(1, warmup // n), n)
                row.backend = label
                rows.append(row)
                if (w, h) == RATIO_SIZE and n == 1:
                    ref = references.get(b.artifact.weights_sha256)
                    if ref is b or b.name == "torch":
                        row.vs_torch = "1.00x"
                    elif ref is not None:
                        print(f"bench: {w}x{h} speed ratio {label} vs torch FP32 (interleaved)", file=sys.stderr)
                        row.vs_torch = f"{speed_ratio(b, ref, clip, frames):.2f}x"
                    else:
                        row.vs_torch = "n/a (torch failed to load)"
        if (w, h) in pipeline_sizes:
            b = backends[0][1]
            print(f"bench: {w}x{h} full pipeline ({b.name})", file=sys.stderr)
            rows.append(bench_pipeline(b, clip, frames, warmup))

    block = header([b for _, b in backends], threads, frames, warmup) + "\n\n" + table(rows)
    print(block)
    if args.record:
        record(Path(args.record), block)
        print(f"bench: appended to {args.record}", file=sys.stderr)
    return 0

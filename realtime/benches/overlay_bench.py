"""Compositing cost per frame: `python -m realtime.benches.overlay_bench [--record BENCHMARKS.md]`.

Times only what runs per frame (the premultiplied blend of cached sprites, and
the whole expression layer with placement), at 1280x720 and 640x360, for each
overlay kind; rasterizing is done once before timing, as in the live service.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np

from realtime.expression.layer import Expression, ExpressionLayer
from realtime.expression.overlay import composite_torch, render_bubble, render_meme, render_stickers, render_subtitle

CASES: tuple[tuple[str, Expression], ...] = (
    ("meme caption", Expression(caption="When the model finally trains 冲鸭！", kind="meme-bottom")),
    ("subtitle", Expression(caption="Monday again… 又是周一 / 月曜日です", kind="subtitle")),
    ("speech bubble", Expression(caption="so sleepy 😴 好困", kind="speech")),
    ("thought bubble", Expression(caption="hmm… pizza? 🍕", kind="thought")),
    ("3 emoji stickers", Expression(emoji=("🎉", "🔥", "✨"))),
    ("caption + bubble kind + 3 stickers", Expression(caption="party time 🎉 派对", kind="speech",
                                                      emoji=("🎉", "🎊", "✨"))),
)


@dataclass
class Row:
    what: str
    size: tuple[int, int]
    blend_p50: float
    blend_p95: float
    layer_p50: float
    layer_p95: float


def _frame(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(x / 37), 128 + 100 * np.cos(y / 23), 128 + 60 * np.sin((x + y) / 51)], -1)
    return img.astype(np.uint8)


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def _sprites(ex: Expression, w: int, h: int) -> list:
    out = []
    if ex.caption and ex.kind.startswith("meme"):
        out.append(render_meme(ex.caption, w, h))
    elif ex.caption and ex.kind == "subtitle":
        out.append(render_subtitle(ex.caption, w, h))
    elif ex.caption:
        made = render_bubble(ex.caption, w, h, ex.kind, (-40, 200))
        out.append(made[0] if made else None)
    if ex.emoji:
        out.append(render_stickers(ex.emoji, h))
    return [s.at(w // 3, h // 4) for s in out if s is not None]


def bench(frames: int = 300, sizes: tuple[tuple[int, int], ...] = ((1280, 720), (640, 360))) -> list[Row]:
    """Per-frame ms: the bare blend of the cached sprites, and the whole layer (placement + blend)."""
    rows = []
    for w, h in sizes:
        base = _frame(w, h)
        for what, ex in CASES:
            sprites = _sprites(ex, w, h)
            blend, layer_ms = [], []
            frame = base.copy()
            for _ in range(frames):
                t0 = time.perf_counter()
                for s in sprites:
                    s.composite(frame)
                blend.append((time.perf_counter() - t0) * 1e3)
            layer = ExpressionLayer(detector=lambda: None)  # no camera face here: placement without a face
            for i in range(frames + 10):
                frame = base.copy()
                t0 = time.perf_counter()
                layer.draw(base, frame, ex)
                if i >= 10:  # the first frames rasterize
                    layer_ms.append((time.perf_counter() - t0) * 1e3)
            rows.append(Row(what, (w, h), statistics.median(blend), _pct(blend, 95),
                            statistics.median(layer_ms), _pct(layer_ms, 95)))
    return rows


def bench_torch(frames: int = 100) -> float | None:
    """p50 ms of composite_torch for the caption + stickers case at 1280x720 on CUDA, or None without CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    sprites = _sprites(CASES[-1][1], 1280, 720)
    frame = torch.rand(3, 720, 1280, device="cuda")
    times = []
    for _ in range(frames):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in sprites:
            composite_torch(frame, s)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def table(rows: list[Row]) -> str:
    lines = ["| overlay | size | blend p50 / p95 (ms) | whole layer p50 / p95 (ms) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.what} | {r.size[0]}x{r.size[1]} | {r.blend_p50:.3f} / {r.blend_p95:.3f} "
                     f"| {r.layer_p50:.3f} / {r.layer_p95:.3f} |")
    return "\n".join(lines)


def machine() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m realtime.benches.overlay_bench", description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--record", metavar="FILE", default=None, help="append the table to this markdown file")
    args = p.parse_args(argv)
    rows = bench(args.frames)
    text = table(rows)
    cuda = bench_torch()
    stamp = f"{machine()}; {datetime.date.today().isoformat()}"
    print(f"Overlay compositing per frame ({stamp})\n\n{text}")
    if cuda is not None:
        print(f"\ncomposite_torch on CUDA, caption + 3 stickers at 1280x720: {cuda:.3f} ms p50")
    if args.record:
        with open(args.record, "a", encoding="utf-8") as fh:
            fh.write(f"\n## Overlay compositing (expression layer)\n\n{stamp}. `python -m realtime.benches.overlay_bench`: "
                     f"sprites are rasterized once (cached), then blended per frame over their bounding boxes; "
                     f"'whole layer' adds placement (busyness map every 5 frames, hysteresis, gliding). "
                     f"{args.frames} frames per row.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""A style fit beside a live session: the peer's frame rate before and during the fit, and the fit's time.

    python scripts/fit_under_load.py                                   # the shipped fit settings
    python scripts/fit_under_load.py --trial 19,1,100,45 --trial 10,1,40,40 --record BENCHMARKS.md

Each trial starts a real `realtime serve` (127.0.0.1, a fresh style library), connects one real aiortc
peer that streams a clip at 640x360, 30 fps (scripts/load_test.py `clip_client`: numbered frames, so
every returned frame is counted once), measures the peer's rate for --before seconds, then posts a
style through POST /api/styles (multipart, as the page does) and measures the peer's rate while the fit
runs. It reports the fit's wall time (POST to done, as the page sees it), the steps the fit did in
that time (from the stored style's manifest), and the peer's rate after the fit, in the new style.

A trial is NICE,THREADS,STEPS,BUDGET_S: the fit process's nice value and torch threads, its step cap
and its time budget (engines/style_fit.FitConfig). The server is started through this script
(`_serve`), which hands the trial's FitConfig to the server's fit queue; everything else is the
shipped server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "scripts"))
from load_test import clip_client, pct, read_clip_frames, server  # noqa: E402

DATA = Path(os.environ.get("STYLIZER_DATA", REPO.parent / "shared" / "data"))
DEFAULT_CLIP = DATA / "video" / "tos_lab_faces_5s.mp4"
DEFAULT_STYLE = DATA / "styles" / "turner_shipwreck_of_the_minotaur_c1810.jpg"
FIT_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Trial:
    nice: int
    threads: int
    steps: int
    budget_s: float

    @classmethod
    def parse(cls, text: str) -> Trial:
        n, t, s, b = text.split(",")
        return cls(int(n), int(t), int(s), float(b))

    @classmethod
    def shipped(cls) -> Trial:
        from engines.style_fit import FitConfig

        c = FitConfig()
        return cls(c.nice, c.threads, c.steps, c.time_budget_s)

    def label(self) -> str:
        return f"nice {self.nice}, {self.threads} thread{'s' if self.threads > 1 else ''}, " \
               f"{self.steps} steps / {self.budget_s:g} s"


def _rate(samples: list[tuple[float, float]], t0: float, t1: float) -> tuple[float, float]:
    """Distinct returned frames per second in [t0, t1), and their p50 latency in ms."""
    window = [lat for t, lat in samples if t0 <= t < t1]
    span = t1 - t0
    return (len(window) / span if span > 0 else 0.0), pct([1e3 * v for v in window], 50)


async def _trial(url: str, styles_dir: Path, trial: Trial, frames: list, style_image: Path, before_s: float,
                 after_s: float, warmup_s: float) -> dict:
    import aiohttp

    from realtime.live import ice

    ice.enable_loopback()
    client = clip_client(frames)
    out: dict = {"trial": trial.__dict__, "label": trial.label()}
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await client.connect(http, url)
            if status != 200:
                raise RuntimeError(f"offer refused: {status} {body}")
            await client.wait_open()
            await client.request({"style": "vangogh", "strength": 0.5})  # the frame index must survive
            await client.wait_frames(10, timeout=60)
            await asyncio.sleep(warmup_s)
            t_before = time.monotonic()
            await asyncio.sleep(before_s)
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("name", "underload")
            form.add_field("image", style_image.read_bytes(), filename=style_image.name, content_type="image/jpeg")
            t_post = time.monotonic()
            async with http.post(f"{url}/api/styles", data=form) as r:
                if r.status != 202:
                    raise RuntimeError(f"POST /api/styles: {r.status} {await r.text()}")
                job = (await r.json())["job"]["id"]
            messages = []
            while True:
                async with http.get(f"{url}/api/styles/jobs/{job}") as r:
                    state = (await r.json())["job"]
                if not messages or messages[-1] != state["message"]:
                    messages.append(state["message"])
                if state["state"] not in ("queued", "running"):
                    break
                if time.monotonic() - t_post > FIT_TIMEOUT_S:
                    raise RuntimeError(f"the fit did not finish in {FIT_TIMEOUT_S:g} s")
                await asyncio.sleep(0.5)
            t_done = time.monotonic()
            if state["state"] != "done":
                raise RuntimeError(f"the fit ended {state['state']}: {state['error']}")
            await client.request({"style": "underload", "strength": 0.5})
            t_after = time.monotonic() + 1.0
            await asyncio.sleep(1.0 + after_s)
            t_end = time.monotonic()
            manifest = json.loads((styles_dir / "underload" / "manifest.json").read_text())
            fit = next(iter(manifest["vectors"].values()))["fit"]
            fps_before, p50_before = _rate(client.samples, t_before, t_post)
            fps_during, p50_during = _rate(client.samples, t_post, t_done)
            fps_after, p50_after = _rate(client.samples, t_after, t_end)
            out.update({"fps_before": fps_before, "fps_during": fps_during, "fps_after": fps_after,
                        "p50_before_ms": p50_before, "p50_during_ms": p50_during, "p50_after_ms": p50_after,
                        "drop": 1.0 - fps_during / fps_before if fps_before else float("nan"),
                        "wall_s": t_done - t_post, "job_seconds": state["seconds"], "steps": fit["steps"],
                        "fit_seconds": fit["seconds"], "start": fit["start"],
                        "loss": [fit["loss_first"], fit["loss_last"]], "messages": messages[-3:]})
    finally:
        await client.close()
    return out


def run_trial(trial: Trial, args: argparse.Namespace, frames: list) -> dict:
    styles_dir = Path(tempfile.mkdtemp(prefix="stylizer-fit-load-"))
    launcher = (str(Path(__file__).resolve()), "_serve", json.dumps(trial.__dict__), "--")
    with server("--styles", str(styles_dir), "--fit-steps", str(trial.steps), *(args.server_arg or []),
                launcher=launcher) as srv:
        res = asyncio.run(_trial(srv.url, styles_dir, trial, frames, Path(args.style_image), args.before, args.after,
                                 args.warmup))
        res["server_log_tracebacks"] = srv.log(200000).count("Traceback")
    return res


HEADER = ("| fit settings (nice, threads, step cap / budget) | peer fps before | during the fit | drop | "
          "after, in the new style | p50 ms before / during | fit wall s (POST to done) | steps done | fit loop s |\n"
          "|---|---:|---:|---:|---:|---|---:|---:|---:|")


def line(r: dict) -> str:
    return (f"| {r['label']} | {r['fps_before']:.1f} | {r['fps_during']:.1f} | {100 * r['drop']:.0f}% | "
            f"{r['fps_after']:.1f} | {r['p50_before_ms']:.0f} / {r['p50_during_ms']:.0f} | {r['wall_s']:.1f} | "
            f"{r['steps']} | {r['fit_seconds']:.1f} |")


def header_text(args: argparse.Namespace) -> str:
    from realtime.benches.bench import cpu_model

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"### A style fit beside a live session (scripts/fit_under_load.py), {now}\n\n"
            f"Machine: {cpu_model()}, {cores} cores, load avg {load:.1f} at start. One aiortc peer streams "
            f"{Path(args.clip).name} at 640x360, 30 fps (strength 0.5); after {args.before:g} s a style is posted "
            f"through POST /api/styles ({Path(args.style_image).name}). Fit wall time: POST to done, as the page "
            f"sees it (process start, model load, the fit, storing).")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_serve"]:  # the server, with the trial's fit settings
        trial = Trial(**json.loads(argv[1]))
        import functools

        import realtime.live.server
        from engines.style_fit import FitConfig

        realtime.live.server.FitConfig = functools.partial(  # type: ignore[attr-defined]
            FitConfig, threads=trial.threads, nice=trial.nice, time_budget_s=trial.budget_s)
        from realtime.cli import main as cli_main

        return cli_main(argv[3:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trial", action="append", default=[], metavar="NICE,THREADS,STEPS,BUDGET_S",
                   help="fit settings to try (repeatable; default: the shipped FitConfig)")
    p.add_argument("--clip", default=str(DEFAULT_CLIP), help="the peer's camera (looped)")
    p.add_argument("--style-image", default=str(DEFAULT_STYLE))
    p.add_argument("--before", type=float, default=15.0, help="seconds measured before the fit")
    p.add_argument("--after", type=float, default=6.0, help="seconds measured after it, in the new style")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--server-arg", action="append", help="extra `realtime serve` argument (repeatable)")
    p.add_argument("--record", default=None, metavar="BENCHMARKS.md", help="append the table there")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    trials = [Trial.parse(t) for t in args.trial] or [Trial.shipped()]
    frames = read_clip_frames(args.clip, (640, 360))
    head = header_text(args)
    print(head + "\n", flush=True)
    print(HEADER, flush=True)
    results = []
    for t in trials:
        try:
            r = run_trial(t, args, frames)
        except Exception as exc:  # noqa: BLE001 - one failed trial is a finding; the others still run
            print(f"| {t.label()} | failed: {exc} |", flush=True)
            results.append({"label": t.label(), "error": str(exc)})
            continue
        results.append(r)
        print(line(r), flush=True)
    good = [r for r in results if "error" not in r]
    if good:
        print(f"\nfps drop during the fit: median {100 * statistics.median(r['drop'] for r in good):.0f}%", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.record and results:
        rows = [line(r) if "error" not in r else f"| {r['label']} | failed: {r['error']} |" for r in results]
        block = "\n".join([head, "", HEADER, *rows])
        with open(args.record, "a", encoding="utf-8") as f:
            f.write("\n" + block + "\n")
        print(f"recorded in {args.record}", flush=True)
    return 0 if len(good) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

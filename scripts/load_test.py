#!/usr/bin/env python3
"""Load, churn and soak runs against a real `realtime serve` on this machine (127.0.0.1 only).

    python scripts/load_test.py load  --peers 1,2,3,4 --seconds 20          # find N; then run 2N
    python scripts/load_test.py churn --cycles 200                          # connect/disconnect, kill -9 clients
    python scripts/load_test.py client --url URL --seconds 20 --out r.json  # one peer (what `load` spawns)

`load` starts a fresh server per row, then N client processes at once (one aiortc peer each, numbered
640x360 frames at 30 fps, as the web app sends them). Each client measures the frames it gets back: rate
(distinct frames per second) and latency (tests/framecode.py: the index drawn into each frame, from the
moment the client's encoder got it to the moment the stylized frame was decoded). A row "holds" when
every peer gets >= 15 fps with p95 latency < 250 ms.

`churn` runs connect/disconnect cycles of four kinds in turn: a web-app peer closed cleanly, a web-app
peer in a subprocess killed with SIGKILL (no goodbye), a WHIP publisher + WHEP viewer closed with DELETE,
and a WHIP publisher subprocess killed with SIGKILL. Afterwards the server must hold no more tasks,
threads, file descriptors or peer connections than after the warm-up cycles, and RSS may grow < 50 MB.

Every request goes to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FPS_FLOOR = 15.0
P95_CEILING_MS = 250.0
RSS_GROWTH_LIMIT_MB = 50.0


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


# ---------------------------------------------------------------- the server


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    log_path: Path
    token: str | None = None

    def get(self, path: str) -> dict:
        req = urllib.request.Request(self.url + path)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(*extra: str, timeout_s: float = 120.0, launcher: tuple[str, ...] = ("-m", "realtime.cli")):
    """A `realtime serve --loopback-ice` subprocess on a free port; stopped with SIGTERM at the end.
    `launcher`: what follows the Python executable up to the `serve` command (a wrapper script may go there)."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="stylizer-load-")) / "server.log"
    cmd = [sys.executable, *launcher, "serve", "--port", str(port), "--loopback-ice",
           "--max-peers-per-client", "64", *extra]  # every client here shares 127.0.0.1
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    srv = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited ({proc.returncode}):\n{srv.log()}")
            try:
                srv.get("/healthz")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{srv.log()}") from None
                time.sleep(0.25)
        yield srv
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


# ---------------------------------------------------------------- a clip as the camera


def read_clip_frames(path: str | Path, size: tuple[int, int], limit: int = 150) -> list:
    """Up to `limit` frames of a video as RGB uint8 arrays at `size` (w, h): what a ClipTrack loops."""
    import av
    import numpy as np

    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(np.ascontiguousarray(f.to_ndarray(format="rgb24", width=size[0], height=size[1])))
            if len(frames) >= limit:
                break
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return frames


def clip_client(frames: list, control: bool = True):
    """An OfferClient (tests/whipclient.py) whose camera loops `frames` at 30 fps, each frame numbered for the
    latency probe, instead of the still test scene."""
    from tests.whipclient import NumberedTrack, OfferClient

    class ClipTrack(NumberedTrack):
        def __init__(self) -> None:
            super().__init__(frames[0])

        async def recv(self):
            self.base = frames[self.i % len(frames)]
            return await super().recv()

    client = OfferClient(frames[0], control=control)
    track = ClipTrack()
    sender = next(t.sender for t in client.pc.getTransceivers() if t.kind == "video")
    sender.replaceTrack(track)
    client.video.stop()
    client.video = track
    return client


# ---------------------------------------------------------------- one client peer (a subprocess)


async def run_client(url: str, seconds: float, warmup: float, size: tuple[int, int], strength: float,
                     ready_after: int = 0) -> dict:
    """One web-app-like peer for `seconds`; returns what it measured after `warmup` seconds."""
    import aiohttp

    from realtime.live import ice
    from tests.whipclient import OfferClient, base_scene

    ice.enable_loopback()
    client = OfferClient(base_scene(*size))
    out: dict = {"ok": False}
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await client.connect(http, url)
            out["status"] = status
            if status != 200:
                out["error"] = body.get("error")
                return out
            await client.wait_open()
            await client.request({"strength": strength})  # the frame index must survive the restyling
            if ready_after:
                await client.wait_frames(ready_after, timeout=60)
                print("READY", flush=True)
            t0 = time.monotonic()
            await asyncio.sleep(seconds)
            start = t0 + warmup
            window = [(t, lat) for t, lat in client.samples if t >= start]
            span = time.monotonic() - start
            lat_ms = [1e3 * lat for _, lat in window]
            half = start + (time.monotonic() - start) / 2
            stats = client.stats()
            out.update({
                "ok": True, "session": client.session, "fps": len(window) / span if span > 0 else 0.0,
                "frames": client.count, "sent": client.video.i,
                "p50_ms": pct(lat_ms, 50), "p95_ms": pct(lat_ms, 95),
                "early_p50_ms": pct([1e3 * lat for t, lat in window if t < half], 50),
                "late_p50_ms": pct([1e3 * lat for t, lat in window if t >= half], 50),
                "server": stats[-1] if stats else {},
            })
    finally:
        await client.close()
    return out


async def run_whip_client(url: str, seconds: float, size: tuple[int, int]) -> None:
    """A WHIP publisher for `seconds` (prints READY once published); the churn kills it with SIGKILL."""
    import aiohttp

    from realtime.live import ice
    from tests.whipclient import WhipPublisher, base_scene

    ice.enable_loopback()
    pub = WhipPublisher(base_scene(*size), audio=False)
    async with aiohttp.ClientSession() as http:
        status, _ = await pub.publish(http, url, None)
        print("READY" if status == 201 else f"STATUS {status}", flush=True)
        await asyncio.sleep(seconds)
    await pub.close()


# ---------------------------------------------------------------- load


def spawn_client(url: str, seconds: float, warmup: float, size: str, strength: float,
                 ready_after: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "client", "--url", url, "--seconds", str(seconds),
           "--warmup", str(warmup), "--size", size, "--strength", str(strength)]
    if ready_after:
        cmd += ["--ready-after", str(ready_after)]
    return subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


@dataclass
class Row:
    peers: int
    results: list[dict]
    rss_idle: float      # the server before any peer (MB)
    rss_start: float     # after the warm-up, peers connected
    rss_end: float       # at the end of the run, peers still connected
    server_stats: dict = field(default_factory=dict)

    @property
    def fps(self) -> list[float]:
        return [r.get("fps", 0.0) for r in self.results]

    @property
    def p95(self) -> list[float]:
        return [r.get("p95_ms", float("nan")) for r in self.results]

    @property
    def holds(self) -> bool:
        ok = [r for r in self.results if r.get("ok")]
        return len(ok) == self.peers and min(self.fps) >= FPS_FLOOR and max(self.p95) < P95_CEILING_MS

    @property
    def fairness(self) -> float:
        f = self.fps
        return min(f) / max(f) if f and max(f) > 0 else 0.0

    def line(self) -> str:
        f, p = self.fps, self.p95
        early = statistics.median([r.get("early_p50_ms", 0) for r in self.results if r.get("ok")] or [0])
        late = statistics.median([r.get("late_p50_ms", 0) for r in self.results if r.get("ok")] or [0])
        misses = sum(r.get("server", {}).get("budget_misses", 0) for r in self.results)
        outs = sum(r.get("server", {}).get("frames_out", 0) for r in self.results)
        return (f"| {self.peers} | {min(f):.1f} / {statistics.median(f):.1f} / {max(f):.1f} | {self.fairness:.2f} | "
                f"{statistics.median([r.get('p50_ms', 0) for r in self.results]):.0f} | {max(p):.0f} | "
                f"{early:.0f} -> {late:.0f} | {100 * misses / max(outs, 1):.0f}% | "
                f"{self.rss_idle:.0f} / {self.rss_start:.0f} -> {self.rss_end:.0f} | {'yes' if self.holds else 'no'} |")


HEADER = ("| peers | fps per peer min / median / max | fairness (min/max) | latency p50 ms | worst peer p95 ms | "
          "p50 first half -> second half | frames over budget | server RSS MB idle / warm -> end | holds |\n"
          "|---|---|---|---|---|---|---|---|---|")


def load_row(n: int, seconds: float, warmup: float, size: str, strength: float, server_args: list[str]) -> Row:
    with server("--max-peers", str(max(64, n)), "--offer-rate", "100", *server_args) as srv:
        rss_idle = srv.get("/debug/resources")["rss_bytes"] / 2**20
        t0 = time.monotonic()
        procs = [spawn_client(srv.url, seconds, warmup, size, strength) for _ in range(n)]
        # Memory is sampled after the warm-up and near the end, while every peer is connected (clients need
        # about 2 s to start): growth between the two is what would be unbounded.
        time.sleep(max(0.0, t0 + 2 + warmup - time.monotonic()))
        rss0 = srv.get("/debug/resources")["rss_bytes"] / 2**20
        series = [round(rss0, 1)]
        while time.monotonic() < t0 + seconds - 10:  # every 10 s: a soak shows whether memory levels off
            time.sleep(10)
            series.append(round(srv.get("/debug/resources")["rss_bytes"] / 2**20, 1))
        time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        rss1 = srv.get("/debug/resources")["rss_bytes"] / 2**20
        series.append(round(rss1, 1))
        metrics = urllib.request.urlopen(srv.url + "/metrics", timeout=10).read().decode()
        results = []
        for p in procs:
            try:
                stdout, _ = p.communicate(timeout=seconds + 120)
                results.append(json.loads(stdout.strip().splitlines()[-1]))
            except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
                p.kill()
                results.append({"ok": False, "error": repr(exc)})
    row = Row(n, results, rss_idle, rss0, rss1)
    # The row's server is fresh, so its counters and histogram sums cover this row (mean = _sum / _count).
    keep = ("stylizer_stage_seconds_sum", "stylizer_stage_seconds_count", "stylizer_frames_total",
            "stylizer_frames_dropped", "stylizer_budget_misses_total", "stylizer_worker_batch",
            'stylizer_stage_seconds_bucket{le="0.05",stage="age"}')
    row.server_stats = {"rss_series_mb": series, "metrics": [ln for ln in metrics.splitlines() if ln.startswith(keep)]}
    return row


def cmd_load(args: argparse.Namespace) -> int:
    print(f"load: {args.size}, {args.seconds:g} s per row ({args.warmup:g} s warm-up), strength {args.strength}",
          flush=True)
    print(HEADER, flush=True)
    rows: list[Row] = []
    for n in [int(x) for x in args.peers.split(",")]:
        row = load_row(n, args.seconds, args.warmup, args.size, args.strength, args.server_arg or [])
        rows.append(row)
        print(row.line(), flush=True)
        if args.verbose:
            print(f"    RSS every 10 s (MB): {row.server_stats['rss_series_mb']}", flush=True)
    good = [r.peers for r in rows if r.holds]
    best = max(good) if good else 0
    print(f"\nlargest N that holds (>= {FPS_FLOOR:g} fps per peer, p95 < {P95_CEILING_MS:g} ms): {best}", flush=True)
    if args.double and best:
        row = load_row(2 * best, args.seconds, args.warmup, args.size, args.strength, args.server_arg or [])
        rows.append(row)
        print(f"2N = {2 * best}:\n{HEADER}\n{row.line()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], default=str, indent=1))
    return 0


# ---------------------------------------------------------------- churn


async def _offer_cycle(url: str, size: tuple[int, int]) -> None:
    import aiohttp

    from tests.whipclient import OfferClient, base_scene

    client = OfferClient(base_scene(*size))
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await client.connect(http, url)
            if status != 200:
                raise RuntimeError(f"offer refused: {status} {body}")
            await client.wait_frames(3, timeout=30)
    finally:
        await client.close()


async def _whip_cycle(url: str, name: str, size: tuple[int, int]) -> None:
    import aiohttp

    from tests.whipclient import WhepViewer, WhipPublisher, base_scene

    pub = WhipPublisher(base_scene(*size), audio=False)
    viewer = WhepViewer()
    try:
        async with aiohttp.ClientSession() as http:
            status, body = await pub.publish(http, f"{url}/whip/{name}", None)
            if status != 201:
                raise RuntimeError(f"WHIP refused: {status} {body}")
            status, body = await viewer.play(http, f"{url}/whep/{name}", None)
            if status != 201:
                raise RuntimeError(f"WHEP refused: {status} {body}")
            await viewer.wait_frames(3, timeout=30)
            for loc in (viewer.location, pub.location):
                async with http.delete(loc) as r:
                    if r.status != 200:
                        raise RuntimeError(f"DELETE {loc}: {r.status}")
    finally:
        await viewer.close()
        await pub.close()


def _killed_cycle(cmd: list[str]) -> None:
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"client exited early ({proc.poll()})")
            if line.startswith("READY"):
                break
            if line.startswith("STATUS"):
                raise RuntimeError(f"client refused: {line.strip()}")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)  # no goodbye: the server must notice by itself
        proc.wait(10)


async def churn(url: str, cycles: int, size: str, warmup_cycles: int = 4, log=print) -> dict:
    """Run `cycles` connect/disconnect cycles (4 kinds in turn); returns resource figures before and after."""
    from realtime.live import ice

    ice.enable_loopback()  # this process's peers gather 127.0.0.1 only
    loop = asyncio.get_running_loop()
    wh = _size(size)
    me = str(Path(__file__).resolve())

    def get(path: str) -> dict:
        with urllib.request.urlopen(url + path, timeout=10) as r:
            return json.loads(r.read())

    async def settle(timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            res = await loop.run_in_executor(None, get, "/debug/resources")
            if (res["sessions"] == 0 and res["streams"] == 0 and res["peers"] == 0
                    and res["peer_connections_alive"] == 0) or time.monotonic() > deadline:
                return res
            await asyncio.sleep(0.5)

    kinds = ("offer", "offer-kill9", "whip+whep", "whip-kill9")
    counts = {k: 0 for k in kinds}
    failures: list[str] = []
    base: dict = {}
    t0 = time.monotonic()
    for i in range(warmup_cycles + cycles):
        if i == warmup_cycles:
            base = await settle()
            log(f"churn: after {warmup_cycles} warm-up cycles: {json.dumps(_brief(base))}")
            t0 = time.monotonic()
        kind = kinds[i % len(kinds)]
        try:
            if kind == "offer":
                await _offer_cycle(url, wh)
            elif kind == "offer-kill9":
                await loop.run_in_executor(None, _killed_cycle, [sys.executable, me, "client", "--url", url,
                                                                 "--seconds", "60", "--size", size,
                                                                 "--ready-after", "3"])
            elif kind == "whip+whep":
                await _whip_cycle(url, f"churn{i}", wh)
            else:
                await loop.run_in_executor(None, _killed_cycle, [sys.executable, me, "whip-client", "--url",
                                                                 f"{url}/whip/kill{i}", "--seconds", "60",
                                                                 "--size", size])
            if i >= warmup_cycles:
                counts[kind] += 1
        except Exception as exc:  # noqa: BLE001  (counted and reported: a failed cycle is a finding)
            failures.append(f"cycle {i} ({kind}): {exc}")
        if i >= warmup_cycles and (i - warmup_cycles + 1) % 20 == 0:
            res = await loop.run_in_executor(None, get, "/debug/resources")
            log(f"churn: {i - warmup_cycles + 1}/{cycles} cycles, {time.monotonic() - t0:.0f} s: {json.dumps(_brief(res))}")
    end = await settle()
    return {"cycles": cycles, "kinds": counts, "failures": failures, "base": base, "end": end,
            "seconds": time.monotonic() - t0}


LEAK_KEYS = ("asyncio_tasks", "threads_other", "open_fds", "peer_connections_alive")
POOL_MAX = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor


def _brief(res: dict) -> dict:
    keys = ("asyncio_tasks", "threads_other", "threads_pooled", "open_fds", "peer_connections_alive", "sessions",
            "streams", "peers")
    return {**{k: res.get(k) for k in keys}, "rss_mb": round(res.get("rss_bytes", 0) / 2**20, 1)}


def churn_table(result: dict) -> str:
    b, e = result["base"], result["end"]
    rows = [("asyncio tasks", "asyncio_tasks"), ("threads (not counting the default executor's pool)", "threads_other"),
            ("default executor pool threads (bounded: at most cores + 4)", "threads_pooled"),
            ("open file descriptors", "open_fds"),
            ("RTCPeerConnections in memory", "peer_connections_alive"), ("sessions / streams / peers", None),
            ("RSS (MB)", "rss_bytes")]
    out = ["| after | warm-up | end | growth |", "|---|---|---|---|"]
    for label, key in rows:
        if key is None:
            out.append(f"| {label} | {b['sessions']} / {b['streams']} / {b['peers']} | "
                       f"{e['sessions']} / {e['streams']} / {e['peers']} | |")
        elif key == "rss_bytes":
            out.append(f"| {label} | {b[key] / 2**20:.1f} | {e[key] / 2**20:.1f} | {(e[key] - b[key]) / 2**20:+.1f} |")
        else:
            out.append(f"| {label} | {b[key]} | {e[key]} | {e[key] - b[key]:+d} |")
    return "\n".join(out)


def cmd_churn(args: argparse.Namespace) -> int:
    with server("--idle-timeout", str(args.idle_timeout), "--connect-timeout", "10", "--offer-rate", "100",
                *(args.server_arg or [])) as srv:
        result = asyncio.run(churn(srv.url, args.cycles, args.size))
        log = srv.log(200000)
    print(f"churn: {result['cycles']} cycles in {result['seconds']:.0f} s: {result['kinds']}")
    print(churn_table(result))
    for f in result["failures"]:
        print("failed:", f)
    growth = (result["end"]["rss_bytes"] - result["base"]["rss_bytes"]) / 2**20
    leaks = [k for k in LEAK_KEYS if result["end"][k] > result["base"][k]]
    if result["end"]["threads_pooled"] > POOL_MAX:
        leaks.append("threads_pooled")
    print(f"leaks: {', '.join(leaks) or 'none'}; RSS growth {growth:+.1f} MB (limit {RSS_GROWTH_LIMIT_MB:g}); "
          f"Tracebacks in the server log: {log.count('Traceback')}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if not leaks and growth < RSS_GROWTH_LIMIT_MB and not result["failures"] else 1


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    ld = sub.add_parser("load", help="N peers per row; the largest N that holds; then 2N")
    ld.add_argument("--peers", default="1,2,3,4")
    ld.add_argument("--seconds", type=float, default=20.0)
    ld.add_argument("--warmup", type=float, default=6.0)
    ld.add_argument("--size", default="640x360")
    ld.add_argument("--strength", type=float, default=0.5)
    ld.add_argument("--double", action="store_true", help="also run 2N for the largest N that holds")
    ld.add_argument("--server-arg", action="append", help="extra `realtime serve` argument (repeatable)")
    ld.add_argument("--json", default=None)
    ld.add_argument("--verbose", action="store_true", help="print the server's RSS every 10 s of each row")
    ch = sub.add_parser("churn", help="connect/disconnect cycles with kill -9; leak figures")
    ch.add_argument("--cycles", type=int, default=200)
    ch.add_argument("--size", default="320x180")
    ch.add_argument("--idle-timeout", type=float, default=3.0)
    ch.add_argument("--server-arg", action="append")
    ch.add_argument("--json", default=None)
    cl = sub.add_parser("client", help="one web-app-like peer; prints a JSON line")
    cl.add_argument("--url", required=True)
    cl.add_argument("--seconds", type=float, default=20.0)
    cl.add_argument("--warmup", type=float, default=6.0)
    cl.add_argument("--size", default="640x360")
    cl.add_argument("--strength", type=float, default=0.5)
    cl.add_argument("--ready-after", type=int, default=0)
    wc = sub.add_parser("whip-client", help="one WHIP publisher (for the churn's kill -9 cycles)")
    wc.add_argument("--url", required=True)
    wc.add_argument("--seconds", type=float, default=60.0)
    wc.add_argument("--size", default="320x180")
    args = p.parse_args(argv)
    if args.cmd == "load":
        return cmd_load(args)
    if args.cmd == "churn":
        return cmd_churn(args)
    if args.cmd == "client":
        out = asyncio.run(run_client(args.url, args.seconds, min(args.warmup, args.seconds / 2), _size(args.size),
                                     args.strength, args.ready_after))
        print(json.dumps(out), flush=True)
        return 0
    asyncio.run(run_whip_client(args.url, args.seconds, _size(args.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

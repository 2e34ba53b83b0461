"""Faults: a wedged or dead inference worker, a back-end exception storm, an overlay that throws for one
session, a full disk under `realtime stylize`, and SIGTERM/SIGINT for `serve` and `stylize`."""

from __future__ import annotations

import asyncio
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import av
import pytest

from engines.loader import load_backend
from realtime.live import ice
from realtime.live.limits import Limits
from realtime.live.server import SESSIONS_KEY, create_app
from tests.apphelpers import serve_app
from tests.conftest import REPO, run_server
from tests.test_stylize import leftovers, make_clip
from tests.whipclient import OfferClient, WhepViewer, WhipPublisher, base_scene

pytestmark = pytest.mark.integration


class FaultyBackend:
    """The real back-end, with faults injected on demand: hang once, raise, or kill the worker thread once."""

    def __init__(self, real) -> None:
        self.real = real
        self.mode: str | None = None
        self.hang_s = 4.0

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def stylize(self, rgb, weights, strength=1.0, out=None):
        mode = self.mode
        if mode == "hang-once":
            self.mode = None
            time.sleep(self.hang_s)
        elif mode == "raise":
            raise RuntimeError("injected back-end failure")
        elif mode == "exit-once":
            self.mode = None
            raise SystemExit("injected: the worker thread dies")
        return self.real.stylize(rgb, weights, strength, out)


@pytest.fixture(scope="module")
def backend():
    return load_backend()


async def _json(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url) as r:
        return await r.json()


def test_worker_hang_and_death_are_recovered(backend) -> None:
    ice.enable_loopback()
    faulty = FaultyBackend(backend)

    async def run() -> dict:
        out: dict = {}
        app = create_app(faulty, limits=Limits(worker_timeout_s=1.0))
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            a, b = OfferClient(base_scene(160, 96)), OfferClient(base_scene(160, 96))
            for c in (a, b):
                assert (await c.connect(http, base))[0] == 200
            await a.wait_frames(5)
            faulty.mode = "hang-once"  # a call that does not come back for 4 s; the watchdog gives up after 1 s
            await asyncio.sleep(0.5)
            n = a.count, b.count
            await asyncio.sleep(2.5)  # the hung call is still asleep: frames must flow from a new worker
            out["during_hang"] = (a.count - n[0], b.count - n[1])
            out["health_after_hang"] = await _json(http, f"{base}/healthz")
            faulty.mode = "exit-once"  # the worker thread itself ends
            await asyncio.sleep(1.0)
            n = a.count, b.count
            await a.wait_frames(10)
            await b.wait_frames(10)
            out["health_after_exit"] = await _json(http, f"{base}/healthz")
            out["errors"] = sum(s.stats()["errors"] for s in app[SESSIONS_KEY].values())
            async with http.get(f"{base}/metrics") as r:
                out["metrics"] = await r.text()
            for c in (a, b):
                await c.close()
        return out

    out = asyncio.run(run())
    assert min(out["during_hang"]) >= 10, out["during_hang"]
    assert out["health_after_hang"]["worker"]["restarts"] == 1
    assert out["health_after_exit"]["status"] == "ok" and out["health_after_exit"]["worker"]["restarts"] == 2
    assert out["health_after_exit"]["worker"]["alive"]
    assert 1 <= out["errors"] <= 4  # the abandoned calls: those frames went back unstylized
    assert "stylizer_worker_restarts_total 2.0" in out["metrics"]


def test_exception_storm_recovers_and_a_hopeless_session_ends_cleanly(backend) -> None:
    ice.enable_loopback()
    faulty = FaultyBackend(backend)

    async def run() -> dict:
        out: dict = {}
        app = create_app(faulty, limits=Limits(storm_s=3.0))
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            a, b = OfferClient(base_scene(160, 96)), OfferClient(base_scene(160, 96))
            for c in (a, b):
                assert (await c.connect(http, base))[0] == 200
            await a.wait_frames(5)
            await b.wait_frames(5)
            faulty.mode = "raise"  # every frame of every session fails, for 1.5 s: shorter than storm_s
            await asyncio.sleep(1.5)
            faulty.mode = None
            await a.wait_frames(10)
            out["after_storm"] = {s.id: s.stats() for s in app[SESSIONS_KEY].values()}
            # Now one session's frames fail for good: that session ends, the other goes on.
            victim = app[SESSIONS_KEY][a.session]

            def broken(rgb):
                raise RuntimeError("injected: this session's pipeline is broken")

            victim.pipeline.process = broken
            ended = time.monotonic()
            while time.monotonic() - ended < 15 and a.session in app[SESSIONS_KEY]:
                await asyncio.sleep(0.2)
            out["victim_closed_after_s"] = time.monotonic() - ended
            out["victim_messages"] = [m for m in a.messages if m.get("type") == "notice"]
            n = b.count
            await b.wait_frames(10)
            out["other"] = (b.count - n, app[SESSIONS_KEY][b.session].stats())
            out["health"] = await _json(http, f"{base}/healthz")
            for c in (a, b):
                await c.close()
        return out

    out = asyncio.run(run())
    assert len(out["after_storm"]) == 2, "a storm shorter than storm_s must not end sessions"
    assert all(s["errors"] > 0 for s in out["after_storm"].values())
    assert 2.5 < out["victim_closed_after_s"] < 10
    assert any(m.get("fatal") and "failed on every frame" in m["message"] for m in out["victim_messages"])
    frames, stats = out["other"]
    assert frames >= 10 and stats["errors"] == out["after_storm"][stats["session"]]["errors"]
    assert out["health"]["status"] == "ok" and out["health"]["sessions"] == 1


def test_overlay_exception_in_one_session_leaves_the_others_alone(backend) -> None:
    ice.enable_loopback()

    async def run() -> dict:
        out: dict = {}
        app = create_app(backend)
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            clients = [OfferClient(base_scene(160, 96)) for _ in range(3)]
            for c in clients:
                assert (await c.connect(http, base))[0] == 200
                await c.wait_open()
                assert (await c.request({"caption": "hello", "emoji": ["party"]}))["type"] == "state"
            for c in clients:
                await c.wait_frames(5)
            poisoned = app[SESSIONS_KEY][clients[0].session]

            def boom(*args, **kwargs):
                raise RuntimeError("injected overlay failure")

            poisoned.pipeline.layer.draw = boom
            counts = [c.count for c in clients]
            await asyncio.sleep(3.0)
            out["frames"] = [c.count - n for c, n in zip(clients, counts)]
            out["stats"] = [app[SESSIONS_KEY][c.session].stats() for c in clients]
            out["layouts"] = [app[SESSIONS_KEY][c.session].pipeline.layer.layout for c in clients]
            for c in clients:
                await c.close()
        return out

    out = asyncio.run(run())
    poisoned, *others = out["stats"]
    assert poisoned["overlay_errors"] >= 3 and poisoned["errors"] == 0, poisoned
    assert all(s["overlay_errors"] == 0 and s["errors"] == 0 for s in others)
    assert out["layouts"][0] == {} and all(lay.get("caption") for lay in out["layouts"][1:])
    assert min(out["frames"]) >= 10, out["frames"]
    # The poisoned session still gets its frames, at about the others' rate.
    assert out["frames"][0] >= 0.5 * max(out["frames"][1:]), out["frames"]


# ---------------------------------------------------------------- `realtime stylize`: a full disk, signals


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("faults") / "long.mp4"
    make_clip(p, w=256, h=144, n=450)
    return p


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_disk_full_is_a_clear_error_and_leaves_nothing(long_clip: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"out{ext}"
    proc = subprocess.run([sys.executable, "-m", "realtime.cli", "stylize", str(long_clip), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                          preexec_fn=_limit_file_size(60_000))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert lines[-1].startswith("realtime: error: ") and "disk space" in lines[-1], lines[-3:]
    assert "Traceback" not in proc.stderr
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stylize_finishes_the_file_on_a_signal(long_clip: Path, tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "realtime.cli", "stylize", str(long_clip), str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 20_000 for p in tmp_path.glob(".out.*.part.mp4")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by" in err and "Traceback" not in err
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert 0 < frames < 450
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- `realtime serve`: clean shutdown


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_closes_peers_and_exits_0_on_a_signal(sig: signal.Signals) -> None:
    ice.enable_loopback()
    with run_server() as srv:

        async def connect() -> list:
            http = aiohttp.ClientSession()
            c = OfferClient(base_scene(160, 96))
            assert (await c.connect(http, srv.url))[0] == 200
            pub = WhipPublisher(base_scene(160, 96), audio=False)
            assert (await pub.publish(http, f"{srv.url}/whip/cam", None))[0] == 201
            viewer = WhepViewer()
            assert (await viewer.play(http, f"{srv.url}/whep/cam", None))[0] == 201
            await c.wait_frames(5)
            await viewer.wait_frames(3)
            srv.proc.send_signal(sig)
            t0 = time.monotonic()
            while srv.proc.poll() is None and time.monotonic() - t0 < 30:
                await asyncio.sleep(0.1)
            took = time.monotonic() - t0
            closed = await _wait_closed([c.pc, pub.pc, viewer.pc], 30)
            for peer in (c, pub, viewer):
                await peer.close()
            await http.close()
            return [took, closed]

        took, closed = asyncio.run(connect())
        print(f"\n[faults] {sig.name}: the server exited {took:.1f} s after the signal")
        code = srv.proc.wait(5)
        log = srv.log(20000)
    assert code == 0, log[-3000:]
    assert took < 15, took
    assert "shutdown: closed 1 session(s)" in log and "stream cam ended" in log and "realtime: stopped" in log
    assert "Traceback" not in log, log[-3000:]
    assert closed, "the clients never saw their connections end"


async def _wait_closed(pcs, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(pc.connectionState in ("closed", "failed") or
               (pc.sctp is not None and pc.sctp.state == "closed") or
               all(r.track.readyState == "ended" for r in pc.getReceivers() if r.track) for pc in pcs):
            return True
        await asyncio.sleep(0.2)
    return False

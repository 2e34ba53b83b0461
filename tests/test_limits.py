"""Limits with real aiortc peers against the server in this process: peers (503), offer rate (429),
control messages, data channels, and odd frame sizes (1x1, odd sides, a size change mid-stream, 4K)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np
import pytest

from engines.loader import load_backend
from realtime.live import ice
from realtime.live.limits import Limits
from realtime.live.server import SESSIONS_KEY, create_app
from tests.apphelpers import serve_app
from tests.whipclient import OfferClient, WhepViewer, WhipPublisher, base_scene

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def backend():
    return load_backend()


async def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


def test_peer_limit_answers_503_busy_and_frees_slots(backend) -> None:
    ice.enable_loopback()

    async def run() -> dict:
        out: dict = {}
        app = create_app(backend, limits=Limits(max_peers=2))
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            a = OfferClient(base_scene(160, 96))
            out["a"] = (await a.connect(http, base))[0]
            pub = WhipPublisher(base_scene(160, 96), audio=False)
            out["pub"] = (await pub.publish(http, f"{base}/whip/cam", None))[0]
            b = OfferClient(base_scene(160, 96))
            out["b"] = await b.connect(http, base)
            viewer = WhepViewer()
            async with http.post(f"{base}/whep/cam", data=b"v=0\r\n",
                                 headers={"Content-Type": "application/sdp"}) as r:
                out["whep"] = (r.status, r.headers.get("Retry-After"), await r.json())
            await a.wait_frames(3)
            async with http.get(f"{base}/metrics") as r:
                out["metrics"] = await r.text()
            await a.close()
            out["freed"] = await _wait(lambda: not app[SESSIONS_KEY], 10)
            c = OfferClient(base_scene(160, 96))
            out["c"] = (await c.connect(http, base))[0]
            for peer in (b, c, pub, viewer):
                await peer.close()
        return out

    out = asyncio.run(run())
    assert out["a"] == 200 and out["pub"] == 201
    status, body = out["b"]
    assert status == 503 and "busy" in body["error"] and "limit 2" in body["error"]
    assert out["whep"][0] == 503 and out["whep"][1] and "busy" in out["whep"][2]["error"]
    assert "stylizer_busy_refusals_total 2.0" in out["metrics"]
    assert 'stylizer_peers{kind="publisher"} 1.0' in out["metrics"]
    assert out["freed"] and out["c"] == 200


def test_offers_are_rate_limited_per_client(backend) -> None:
    async def run() -> list[tuple[int, str | None, str]]:
        out = []
        app = create_app(backend, limits=Limits(offer_rate=0.5, offer_burst=3))
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            for _ in range(5):
                async with http.post(f"{base}/offer", json={"sdp": "v=0", "type": "offer"}) as r:
                    out.append((r.status, r.headers.get("Retry-After"), (await r.json())["error"]))
            async with http.post(f"{base}/whip/x", data=b"v=0\r\n", headers={"Content-Type": "application/sdp"}) as r:
                out.append((r.status, r.headers.get("Retry-After"), (await r.json())["error"]))
        return out

    out = asyncio.run(run())
    assert [s for s, _, _ in out] == [400, 400, 400, 429, 429, 429]
    assert out[3][1] and "too many offers" in out[3][2]


def test_control_limits_and_one_control_channel(backend) -> None:
    ice.enable_loopback()

    async def run() -> dict:
        out: dict = {}
        app = create_app(backend)
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            c = OfferClient(base_scene(160, 96))
            extra = [c.pc.createDataChannel(f"extra{i}") for i in range(5)]
            assert (await c.connect(http, base))[0] == 200
            await c.wait_open()
            out["caption"] = await c.request({"caption": "x" * 201})
            out["emoji"] = await c.request({"emoji": ["party"] * 9})
            out["big"] = await c.request(json.dumps({"caption": "a", "id": "y" * 5000}))
            out["mood"] = await c.request({"mood": "m" * 81})
            out["closed_extra"] = await _wait(lambda: all(ch.readyState == "closed" for ch in extra), 10)
            for i in range(120):  # a flood: past 40 in a burst, refused with an error (itself rate limited)
                c.channel.send(json.dumps({"strength": 0.5, "id": i}))
            await asyncio.sleep(1.5)
            out["flood"] = [m for m in c.messages if m.get("type") == "error" and "too many" in m["message"]]
            n = c.count
            await c.wait_frames(5)
            out["frames_after"] = c.count - n
            out["stats"] = c.stats()[-1]
            out["tasks"] = len(next(iter(app[SESSIONS_KEY].values())).tasks)
            await c.close()
        return out

    out = asyncio.run(run())
    assert out["caption"]["type"] == "error" and "too long" in out["caption"]["message"]
    assert out["emoji"]["type"] == "error" and "too many emoji" in out["emoji"]["message"]
    assert out["big"]["type"] == "error" and "too large" in out["big"]["message"]
    assert out["mood"]["type"] == "error" and "too long" in out["mood"]["message"]
    assert out["closed_extra"], "extra data channels were kept open"
    assert out["flood"] and len(out["flood"]) <= 12, len(out["flood"])  # error replies limited to 10/s
    assert out["stats"]["control_dropped"] >= 60
    assert out["frames_after"] >= 5
    assert out["tasks"] <= 3  # stats loop, watch: not one per data channel


def test_odd_frame_sizes_and_a_size_change(backend) -> None:
    """1x1 comes back unchanged with an error; odd sides and a size change mid-stream are stylized;
    4K ends that session with a clear error; a bystander session sees none of it."""
    ice.enable_loopback()

    async def run() -> dict:
        out: dict = {}
        app = create_app(backend)
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            bystander = OfferClient(base_scene(320, 180))
            assert (await bystander.connect(http, base))[0] == 200
            await bystander.wait_frames(5)
            tiny = OfferClient(np.full((1, 1, 3), 200, np.uint8))
            odd = OfferClient(base_scene(321, 181))
            for c in (tiny, odd):
                assert (await c.connect(http, base))[0] == 200
            await tiny.wait_frames(3)
            await odd.wait_frames(5)
            odd.video.base = base_scene(480, 270)  # the camera changes resolution mid-stream
            await odd.wait_frames(10)
            odd.video.base = base_scene(200, 112)
            await odd.wait_frames(10)
            out["tiny_sizes"], out["odd_sizes"] = tiny.sizes, odd.sizes
            await _wait(lambda: any(m.get("type") == "notice" for m in tiny.messages), 5)
            out["tiny_notices"] = [m["message"] for m in tiny.messages if m.get("type") == "notice"]
            out["odd_stats"] = odd.stats()[-1]
            huge = OfferClient(base_scene(3840, 2160), control=True)
            assert (await huge.connect(http, base))[0] == 200
            out["huge_ended"] = await _wait(lambda: huge.pc.connectionState == "closed" or any(
                m.get("fatal") for m in huge.messages), 90)
            out["huge_notices"] = [m for m in huge.messages if m.get("type") == "notice"]
            n = bystander.count
            await bystander.wait_frames(10)
            out["bystander"] = (bystander.count - n, bystander.stats()[-1])
            for c in (bystander, tiny, odd, huge):
                await c.close()
        return out

    out = asyncio.run(run())
    assert out["tiny_sizes"][0] == (1, 1)
    assert any("too small" in m for m in out["tiny_notices"]), out["tiny_notices"]
    assert (321, 181) in out["odd_sizes"] and (480, 270) in out["odd_sizes"] and (200, 112) in out["odd_sizes"]
    assert out["odd_stats"]["errors"] == 0
    assert out["huge_ended"] and any(m.get("fatal") and "too big" in m["message"] for m in out["huge_notices"]), \
        out["huge_notices"]
    frames, stats = out["bystander"]
    assert frames >= 10 and stats["errors"] == 0

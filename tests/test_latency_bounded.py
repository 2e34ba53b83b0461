"""At 1280x720 under CPU contention, latency stays bounded: frames are dropped, never queued.

A real aiortc client sends numbered 720p frames to a real `realtime serve` subprocess while
a busy process competes for the two cores. Latency per returned frame is measured from the
index drawn into it. Asserted only as ratios within this run: late latency vs early latency.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time

import aiohttp
import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from realtime.live import ice
from tests.conftest import run_server
from tests.framecode import draw_index, read_index

pytestmark = pytest.mark.integration

W, H = 1280, 720
SECONDS = 10.0


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _base_scene() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / 41), 128 + 90 * np.cos(y / 29), 128 + 60 * np.sin((x + y) / 57)], -1)
    return img.clip(0, 255).astype(np.uint8)


class NumberedTrack(VideoStreamTrack):
    def __init__(self) -> None:
        super().__init__()
        self.base = _base_scene()
        self.sent: dict[int, float] = {}
        self.i = 0

    async def recv(self) -> av.VideoFrame:
        pts, tb = await self.next_timestamp()
        img = self.base.copy()
        draw_index(img, self.i)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, tb
        self.sent[self.i % 4096] = time.monotonic()
        self.i += 1
        return frame


async def _measure(url: str) -> dict:
    ice.enable_loopback()
    pc = RTCPeerConnection(ice.rtc_configuration())
    track = NumberedTrack()
    pc.addTrack(track)
    channel = pc.createDataChannel("control")
    stats: list[dict] = []
    channel.on("message", lambda m: stats.append(json.loads(m)))
    samples: list[tuple[float, float]] = []  # (receive time, latency s)
    done = asyncio.Event()

    @pc.on("track")
    def on_track(remote) -> None:
        async def pull() -> None:
            while not done.is_set():
                try:
                    f = await remote.recv()
                except Exception:
                    return
                now = time.monotonic()
                idx = read_index(f.to_ndarray(format="rgb24"))
                if idx is not None and idx in track.sent:
                    samples.append((now, now - track.sent[idx]))

        asyncio.ensure_future(pull())

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            ans = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=ans["sdp"], type=ans["type"]))
    t0 = time.monotonic()
    await asyncio.sleep(SECONDS)
    done.set()
    await pc.close()
    return {"samples": [(t - t0, lat) for t, lat in samples], "stats": [s for s in stats if s.get("type") == "stats"],
            "sent": track.i}


def test_720p_latency_stays_bounded_under_contention() -> None:
    stop_at = time.time() + SECONDS + 30
    hog = multiprocessing.Process(target=_burn, args=(stop_at,), daemon=True)
    with run_server() as server:
        hog.start()
        try:
            result = asyncio.run(_measure(server.url))
        finally:
            hog.terminate()
    samples = result["samples"]
    assert len(samples) >= 10, f"too few decodable frames returned: {len(samples)} (server log: {server.log()})"
    lat = np.array([s[1] for s in samples]) * 1e3
    times = np.array([s[0] for s in samples])
    early = lat[times < times.min() + 3.0]
    late = lat[times > times.max() - 3.0]
    last = result["stats"][-1] if result["stats"] else {}
    print(f"\n720p under contention: sent {result['sent']} frames, returned {len(samples)} decodable, "
          f"latency p50 {np.median(lat):.0f} ms p90 {np.percentile(lat, 90):.0f} ms, "
          f"early p50 {np.median(early):.0f} ms, late p50 {np.median(late):.0f} ms, "
          f"server dropped {last.get('dropped')}, fps out {last.get('fps_out')}")
    # Queuing would make latency grow for as long as the overload lasts; dropping keeps it flat.
    assert np.median(late) < 2.0 * np.median(early) + 150
    assert last.get("dropped", 0) > 0, "the server never dropped a frame: it must have queued them"

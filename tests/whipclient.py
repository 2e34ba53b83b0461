"""Real WHIP and WHEP peers (aiortc) for tests: a publisher of numbered frames, a viewer that records them.

Both speak plain WHIP/WHEP: POST the SDP offer (application/sdp, fully gathered, no trickle),
read the 201 answer and its Location, DELETE the Location at the end.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from tests.framecode import draw_index, read_index


def base_scene(w: int, h: int) -> np.ndarray:
    """A textured, colourful picture (h, w, 3) uint8 with two flat patches, so restyling is easy to see."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / 41), 128 + 90 * np.cos(y / 29), 128 + 60 * np.sin((x + y) / 57)], -1)
    img[h // 4 : h // 2, w // 5 : w // 2] = (230, 40, 40)
    img[h // 2 : 3 * h // 4, w // 2 : 4 * w // 5] = (30, 60, 220)
    return img.clip(0, 255).astype(np.uint8)


def numbered(base: np.ndarray, i: int) -> np.ndarray:
    img = base.copy()
    draw_index(img, i)
    return img


class NumberedTrack(VideoStreamTrack):
    """30 fps of `base` with the frame index drawn in; remembers when each index was handed to the encoder."""

    def __init__(self, base: np.ndarray) -> None:
        super().__init__()
        self.base = base
        self.sent: dict[int, float] = {}
        self.i = 0

    async def recv(self) -> av.VideoFrame:
        pts, tb = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(numbered(self.base, self.i), format="rgb24")
        frame.pts, frame.time_base = pts, tb
        self.sent[self.i % 4096] = time.monotonic()
        self.i += 1
        return frame


class ToneTrack(AudioStreamTrack):
    """20 ms frames of a 440 Hz tone (48 kHz mono)."""

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # paced silence with the right pts
        t = (frame.pts + np.arange(frame.samples)) / 48000
        frame.planes[0].update((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).tobytes())
        return frame


def _config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])  # loopback only: no STUN server


async def _post_offer(http: aiohttp.ClientSession, pc: RTCPeerConnection, url: str,
                      token: str | None) -> tuple[int, str | None, str]:
    """POST the gathered offer; apply the answer on 201. Returns (status, Location, body)."""
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate here
    headers = {"Content-Type": "application/sdp"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url, data=pc.localDescription.sdp.encode(), headers=headers) as r:
        body = await r.text()
        location = r.headers.get("Location")
        if r.status == 201:
            assert r.headers.get("Content-Type", "").startswith("application/sdp"), r.headers
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        return r.status, location, body


class WhipPublisher:
    """Publishes numbered frames (and a tone) to a WHIP endpoint; `codec="H264"` offers only H.264, as OBS does."""

    def __init__(self, base: np.ndarray, audio: bool = True, codec: str | None = None) -> None:
        self.pc = RTCPeerConnection(_config())
        self.video = NumberedTrack(base)
        transceiver = self.pc.addTransceiver(self.video, direction="sendonly")
        if codec is not None:
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == f"video/{codec.lower()}"])
        if audio:
            self.pc.addTransceiver(ToneTrack(), direction="sendonly")
        self.location: str | None = None

    async def publish(self, http: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, str]:
        status, self.location, body = await _post_offer(http, self.pc, url, token)
        return status, body

    async def close(self) -> None:
        await self.pc.close()


class WhepViewer:
    """Pulls a stream from a WHEP endpoint: video frames (with arrival times), audio frames, overlay messages."""

    def __init__(self, video: bool = True, audio: bool = False, overlay: bool = False, keep: int = 0) -> None:
        self.pc = RTCPeerConnection(_config())
        if video:
            self.pc.addTransceiver("video", direction="recvonly")
        if audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.keep = keep                       # keep the last `keep` decoded frames (RGB)
        self.frames: list[np.ndarray] = []
        self.count = 0
        self.audio_frames = 0
        self.arrivals: dict[int, float] = {}   # frame index -> first arrival (monotonic)
        self.indices: list[int | None] = []
        self.ended = asyncio.Event()
        self.messages: list[dict] = []
        self.location: str | None = None
        self._tasks: list[asyncio.Task] = []
        if overlay:
            channel = self.pc.createDataChannel("overlay")
            channel.on("message", lambda m: self.messages.append(json.loads(m)))

        @self.pc.on("track")
        def on_track(track) -> None:
            self._tasks.append(asyncio.ensure_future(self._collect(track)))

    async def _collect(self, track) -> None:
        try:
            while True:
                f = await track.recv()
                if track.kind == "audio":
                    self.audio_frames += 1
                    continue
                t = time.monotonic()
                rgb = f.to_ndarray(format="rgb24")
                idx = read_index(rgb)
                self.indices.append(idx)
                if idx is not None and idx not in self.arrivals:
                    self.arrivals[idx] = t
                self.count += 1
                if self.keep:
                    self.frames.append(rgb)
                    del self.frames[: -self.keep]
        except MediaStreamError:
            if track.kind == "video":
                self.ended.set()

    async def play(self, http: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, str]:
        status, self.location, body = await _post_offer(http, self.pc, url, token)
        return status, body

    async def wait_frames(self, n: int, timeout: float = 30.0) -> None:
        target = self.count + n
        deadline = time.monotonic() + timeout
        while self.count < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.count} frames received, wanted {target}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()


def latencies_ms(sent: dict[int, float], arrivals: dict[int, float]) -> list[float]:
    """Per frame index seen by the viewer: arrival minus hand-over to the publisher's encoder."""
    return [1e3 * (arrivals[i] - sent[i]) for i in arrivals if i in sent and arrivals[i] >= sent[i]]


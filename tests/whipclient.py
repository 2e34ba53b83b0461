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



def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a decoded frame as (h, w, 1) uint8, without a colour conversion (enough for read_index)."""
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
    return y[..., None]


class OfferClient:
    """A peer like the web app: POST /offer (JSON), numbered frames out, stylized frames back, `control` channel.

    Latency per returned frame comes from the index drawn into it (tests/framecode.py): arrival minus the
    moment the publisher's encoder was handed that frame. `samples` holds (arrival, latency s)."""

    def __init__(self, base: np.ndarray, control: bool = True) -> None:
        self.pc = RTCPeerConnection(_config())
        self.video = NumberedTrack(base)
        self.pc.addTrack(self.video)
        self.channel = self.pc.createDataChannel("control") if control else None
        self.messages: list[dict] = []
        self.replies: asyncio.Queue = asyncio.Queue()
        self.count = 0
        self.sizes: list[tuple[int, int]] = []
        self.samples: list[tuple[float, float]] = []
        self.seen: set[int] = set()
        self.ended = asyncio.Event()
        self.session: str | None = None
        self._tasks: list[asyncio.Task] = []
        if self.channel is not None:
            self.channel.on("message", self._on_message)

        @self.pc.on("track")
        def on_track(track) -> None:
            self._tasks.append(asyncio.ensure_future(self._collect(track)))

    def _on_message(self, m: str | bytes) -> None:
        msg = json.loads(m)
        self.messages.append(msg)
        del self.messages[:-200]
        if msg.get("type") in ("state", "error"):
            self.replies.put_nowait(msg)

    async def _collect(self, track) -> None:
        try:
            while True:
                f = await track.recv()
                t = time.monotonic()
                self.count += 1
                if not self.sizes or self.sizes[-1] != (f.width, f.height):
                    self.sizes.append((f.width, f.height))
                idx = read_index(luma(f)) if f.format.name == "yuv420p" else read_index(f.to_ndarray(format="rgb24"))
                if idx is not None and idx not in self.seen:
                    self.seen.add(idx)
                    sent = self.video.sent.get(idx)
                    if sent is not None and t >= sent:
                        self.samples.append((t, t - sent))
                if len(self.seen) > 2048:
                    self.seen.clear()
        except MediaStreamError:
            self.ended.set()

    async def connect(self, http: aiohttp.ClientSession, base_url: str, token: str | None = None) -> tuple[int, dict]:
        """POST the gathered offer to /offer; apply the answer on 200. Returns (status, JSON body)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with http.post(f"{base_url}/offer", json={"sdp": self.pc.localDescription.sdp, "type": "offer"},
                             headers=headers) as r:
            body = await r.json(content_type=None)
            if r.status == 200:
                self.session = body.get("session")
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
            return r.status, body

    async def wait_open(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.channel is not None and self.channel.readyState != "open":
            if time.monotonic() > deadline:
                raise AssertionError("control channel never opened")
            await asyncio.sleep(0.05)

    async def request(self, payload: dict | str, timeout: float = 5.0) -> dict:
        """Send one control message and return its state/error reply."""
        assert self.channel is not None
        while not self.replies.empty():
            self.replies.get_nowait()
        self.channel.send(payload if isinstance(payload, str) else json.dumps(payload))
        return await asyncio.wait_for(self.replies.get(), timeout)

    async def wait_frames(self, n: int, timeout: float = 30.0) -> None:
        target = self.count + n
        deadline = time.monotonic() + timeout
        while self.count < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.count} frames received, wanted {target}")
            await asyncio.sleep(0.05)

    def stats(self) -> list[dict]:
        return [m for m in self.messages if m.get("type") == "stats"]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        await self.pc.close()

"""Named live streams: one publisher (WHIP), one inference per frame, any number of viewers (WHEP).

    publisher track -> LatestFrameReader (newest frame only) -> StreamTrack (stylize once: FrameStep, track.py)
                    -> MediaRelay(buffered=False) -> one proxy per WHEP viewer (each encodes for itself)
                    -> OverlayFeed -> overlay-only viewers (sprites + places over a data channel)
    publisher audio -> AudioFanout -> a short queue per viewer

The StreamTrack outlives its publisher: a new WHIP publish to a live name replaces the
publisher (OBS reconnecting), and viewers keep their connection. Inference pauses while
nobody watches; the reader keeps draining the publisher so nothing queues up.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import fractions
import io
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from engines.backends import Backend
from realtime.expression.moods import MoodBook
from realtime.expression.overlay import Sprite
from realtime.live.limits import Limits, Slot
from realtime.live.ratelimit import TokenBucket
from realtime.live.track import FrameStep, LatestFrameReader, close_pc, drain, rate
from realtime.pipeline import FramePipeline, StyleState

log = logging.getLogger("realtime.streams")

VIDEO_CLOCK = fractions.Fraction(1, 90000)
AUDIO_QUEUE_FRAMES = 25          # 0.5 s of 20 ms Opus frames per viewer; older ones are dropped
OVERLAY_BUFFER_LIMIT = 1 << 20   # bytes queued on an overlay channel before updates are skipped
SPRITE_CACHE = 64                # PNGs kept per stream (bubbles re-render when their tail turns)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


# ---------------------------------------------------------------- overlay-only viewers


class OverlayFeed:
    """The expression layer alone, for compositing: sprites (PNG, sent once) and their places, per frame.

    Messages on a viewer's `overlay` data channel (JSON):
        {"type": "sprite", "id": 3, "w": 120, "h": 40, "png": "data:image/png;base64,..."}
        {"type": "overlay", "w": 640, "h": 360, "items": [{"id": 3, "x": 10, "y": 300}, ...]}
    A sprite is sent before the first overlay message that uses it.
    """

    def __init__(self) -> None:
        self.channels: dict[Any, dict] = {}  # channel -> {"sent": set of sprite ids, "last": last overlay message}
        # id(sprite.rgb) -> (rgb, sprite id, message). Holding rgb keeps its id() from being reused.
        # Touched only by the inference thread (snapshot) and read on the loop after it (publish).
        self._pngs: OrderedDict[int, tuple[np.ndarray, int, str]] = OrderedDict()
        self._next_id = 1
        self.current: tuple[str, list[tuple[int, str]]] | None = None  # (overlay message, [(sprite id, message)])

    @property
    def wanted(self) -> bool:
        return bool(self.channels)

    def _png(self, sprite: Sprite) -> tuple[int, str]:
        key = id(sprite.rgb)
        hit = self._pngs.get(key)
        if hit is not None and hit[0] is sprite.rgb:
            self._pngs.move_to_end(key)
            return hit[1], hit[2]
        from PIL import Image

        a = sprite.alpha[..., 0]
        straight = np.where(a[..., None] > 0, sprite.rgb / np.maximum(a[..., None], 1e-6), 0.0)
        rgba = np.dstack([straight.clip(0, 255), a * 255.0]).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
        sid = self._next_id
        self._next_id += 1
        msg = json.dumps({"type": "sprite", "id": sid, "w": sprite.width, "h": sprite.height,
                          "png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()})
        self._pngs[key] = (sprite.rgb, sid, msg)
        while len(self._pngs) > SPRITE_CACHE:
            self._pngs.popitem(last=False)
        return sid, msg

    def snapshot(self, sprites: list[Sprite], width: int, height: int) -> None:
        """Inference thread, right after a frame: what the overlay viewers should show now."""
        items, defs = [], []
        for s in sprites:
            sid, msg = self._png(s)
            items.append({"id": sid, "x": s.x, "y": s.y})
            defs.append((sid, msg))
        self.current = (json.dumps({"type": "overlay", "w": width, "h": height, "items": items}), defs)

    def publish(self) -> None:
        """Event loop: send the current overlay to every channel that has not got it yet."""
        if self.current is None:
            return
        overlay, defs = self.current
        for channel, seen in list(self.channels.items()):
            if channel.readyState != "open" or seen["last"] == overlay:
                continue
            if channel.bufferedAmount > OVERLAY_BUFFER_LIMIT:
                continue  # a slow viewer skips updates instead of building latency
            for sid, msg in defs:
                if sid not in seen["sent"]:
                    channel.send(msg)
                    seen["sent"].add(sid)
            channel.send(overlay)
            seen["last"] = overlay

    def add(self, channel: Any) -> None:
        self.channels[channel] = {"sent": set(), "last": None}
        self.publish()

    def discard(self, channel: Any) -> None:
        self.channels.pop(channel, None)


# ---------------------------------------------------------------- the one inference


class StreamTrack(MediaStreamTrack):
    """The stylized video of a stream. Each recv() stylizes the newest published frame once; a MediaRelay
    hands the result to every viewer. The publisher (reader) can be swapped underneath."""

    kind = "video"

    def __init__(self, pipeline: FramePipeline, executor: concurrent.futures.Executor,
                 overlay: OverlayFeed, limits: Limits | None = None) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.overlay = overlay
        # One conversion to yuv420p for every viewer's encoder (see FrameStep.out_format).
        self.step = FrameStep(pipeline, executor, limits or Limits(), out_format="yuv420p", logger=log)
        self.step.on_processed = self._snapshot
        self.reader: LatestFrameReader | None = None
        self.wanted = asyncio.Event()       # set while anyone watches: inference pauses otherwise
        self._changed = asyncio.Event()     # a new publisher, or the end
        self.ended = False
        self._last_t: float | None = None   # seconds on the output clock of the last frame
        self._offset = 0.0                  # publisher clock -> output clock
        self._offset_for: LatestFrameReader | None = None

    @property
    def inferences(self) -> int:
        """Frames stylized: the only place the network runs for this stream, whatever the viewer count."""
        return self.step.processed

    def _snapshot(self, size: tuple[int, int]) -> None:
        """Inference thread, after each frame: what the overlay-only viewers should show now."""
        if self.overlay.wanted:
            self.overlay.snapshot(list(self.pipeline.layer.sprites), *size)

    def set_reader(self, reader: LatestFrameReader | None) -> None:
        old, self.reader = self.reader, reader
        if old is not None and old is not reader:
            old.stop()
        self._changed.set()

    def end(self) -> None:
        self.ended = True
        self.set_reader(None)
        self.wanted.set()  # wake a recv() that waits for viewers, so it can see the end

    async def _next_frame(self) -> tuple[LatestFrameReader, av.VideoFrame, float]:
        while True:
            if self.ended:
                raise MediaStreamError
            reader = self.reader
            if reader is not None:
                try:
                    return (reader, *await reader.next_timed())
                except MediaStreamError:
                    if reader is not self.reader:
                        continue  # replaced by a new publisher while waiting
            # No publisher for now: wait for one (or for the end).
            self._changed.clear()
            if self.reader is reader and not self.ended:
                await self._changed.wait()

    def _out_time(self, reader: LatestFrameReader, frame: av.VideoFrame) -> float:
        """The frame's time on a clock that never goes back, even across publishers."""
        t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else time.monotonic()
        if self._offset_for is not reader:
            self._offset_for = reader
            self._offset = (self._last_t + 1 / 30 - t) if self._last_t is not None else -t
        out = t + self._offset
        if self._last_t is not None and out <= self._last_t:
            out = self._last_t + 0.001
        self._last_t = out
        return out

    async def recv(self) -> av.VideoFrame:
        await self.wanted.wait()
        reader, frame, arrival = await self._next_frame()
        frame, new, arrival = await self.step.run(reader, frame, arrival)
        self.step.handed(new, arrival)
        new.pts = round(self._out_time(reader, frame) / VIDEO_CLOCK)
        new.time_base = VIDEO_CLOCK
        self.overlay.publish()
        return new


# ---------------------------------------------------------------- audio


class AudioTap(MediaStreamTrack):
    """One viewer's audio: the newest AUDIO_QUEUE_FRAMES frames of the publisher."""

    kind = "audio"

    def __init__(self, fanout: AudioFanout) -> None:
        super().__init__()
        self._fanout: AudioFanout | None = fanout
        self._queue: deque[av.AudioFrame] = deque(maxlen=AUDIO_QUEUE_FRAMES)
        self._event = asyncio.Event()
        self.ended = False

    def push(self, frame: av.AudioFrame | None) -> None:
        if frame is None:
            self.ended = True
        else:
            self._queue.append(frame)
        self._event.set()

    async def recv(self) -> av.AudioFrame:
        while not self._queue:
            if self.ended or self.readyState != "live":
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        if self._fanout is not None:
            self._fanout.taps.discard(self)
            self._fanout = None


class AudioFanout:
    """Publisher audio to every viewer. It drains the source all the time (aiortc queues without bound)
    and re-stamps frames by sample count, so a new publisher does not make the viewers' clock jump."""

    def __init__(self) -> None:
        self.taps: set[AudioTap] = set()
        self._task: asyncio.Task | None = None
        self._samples = 0

    def set_source(self, track: MediaStreamTrack | None) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if track is not None:
            self._task = asyncio.ensure_future(self._pump(track))

    async def _pump(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                rate = frame.sample_rate or 48000
                frame.pts, frame.time_base = self._samples, fractions.Fraction(1, rate)
                self._samples += frame.samples
                for tap in list(self.taps):
                    tap.push(frame)
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def subscribe(self) -> AudioTap:
        tap = AudioTap(self)
        self.taps.add(tap)
        return tap

    def close(self) -> None:
        self.set_source(None)
        for tap in list(self.taps):
            tap.push(None)
        self.taps.clear()


# ---------------------------------------------------------------- peers


class Publisher:
    """The WHIP peer feeding a stream."""

    def __init__(self, pc: RTCPeerConnection, video: MediaStreamTrack, audio: MediaStreamTrack | None,
                 slot: Slot | None = None) -> None:
        self.id = _new_id()
        self.pc = pc
        self.reader = LatestFrameReader(video)
        self.audio = audio
        self.since = time.time()
        self.slot = slot
        self.tasks: list[asyncio.Task] = []  # the watch task (any other track is answered inactive: none to drain)

    async def close(self) -> None:
        me = asyncio.current_task()
        for task in self.tasks:
            if task is not me:  # a watch task may be the one closing this
                task.cancel()
        self.reader.stop()
        try:
            await close_pc(self.pc)
        finally:
            if self.slot is not None:
                self.slot.release()


class Viewer:
    """A WHEP peer pulling a stream: video and/or audio tracks, and/or an `overlay` data channel (and/or an
    idle `status` channel, which closes with the session)."""

    def __init__(self, pc: RTCPeerConnection, slot: Slot | None = None) -> None:
        self.id = _new_id()
        self.pc = pc
        self.tracks: list[MediaStreamTrack] = []   # relay proxies / audio taps this viewer pulls
        self.overlay_channel: Any = None
        self.status_channel: Any = None             # the viewer page's end-of-session signal (nothing sent)
        self.drain: MediaStreamTrack | None = None  # a relay proxy pulled (not sent) for an overlay-only viewer
        self._drain_task: asyncio.Task | None = None
        self.since = time.time()
        self.slot = slot
        self.tasks: list[asyncio.Task] = []         # connect watch

    @property
    def video(self) -> bool:
        return any(t.kind == "video" for t in self.tracks)

    def start_drain(self, proxy: MediaStreamTrack) -> None:
        """Pull `proxy` and throw the frames away: an overlay-only viewer needs frames processed, not sent."""
        self.drain = proxy
        self._drain_task = asyncio.ensure_future(drain(proxy))

    async def close(self) -> None:
        if self._drain_task is not None:
            self._drain_task.cancel()
        me = asyncio.current_task()
        for task in self.tasks:
            if task is not me:  # a watch task may be the one closing this
                task.cancel()
        for t in [*self.tracks, *([self.drain] if self.drain else [])]:
            t.stop()
        try:
            await close_pc(self.pc)
        finally:
            if self.slot is not None:
                self.slot.release()


# ---------------------------------------------------------------- a stream


class LiveStream:
    """A named stylized stream: its settings (pipeline), the publisher, the one inference, the viewers."""

    def __init__(self, name: str, backend: Backend, moods: MoodBook, executor: concurrent.futures.Executor,
                 state: StyleState | None = None, limits: Limits | None = None) -> None:
        self.name = name
        self.limits = limits or Limits()
        self.pipeline = FramePipeline(backend, state, moods)
        self.pipeline.label = f"stream {name}"
        self.overlay = OverlayFeed()
        self.track = StreamTrack(self.pipeline, executor, self.overlay, self.limits)
        self.relay = MediaRelay()
        self.audio = AudioFanout()
        self.publisher: Publisher | None = None
        self.viewers: dict[str, Viewer] = {}
        self.control_bucket = TokenBucket()   # API updates, same limit as a data channel
        self.since = time.time()
        self.publishers = 0                   # how many publishes (1 + reconnects)
        self.frames_in_before = 0             # counters of replaced publishers
        self.dropped_before = 0

    # publisher

    async def attach(self, publisher: Publisher) -> None:
        """Make `publisher` the source; an earlier one is replaced (and closed)."""
        old, self.publisher = self.publisher, publisher
        self.publishers += 1
        self.track.set_reader(publisher.reader)
        self.audio.set_source(publisher.audio)
        if old is not None:
            self.frames_in_before += old.reader.frames_in
            self.dropped_before += old.reader.dropped
            await old.close()

    # viewers

    def subscribe_video(self) -> MediaStreamTrack:
        """A viewer's copy of the stylized video: always the newest frame (no queue), one inference for all."""
        return self.relay.subscribe(self.track, buffered=False)

    def add_viewer(self, viewer: Viewer) -> None:
        self.viewers[viewer.id] = viewer
        self.track.wanted.set()

    def set_overlay_channel(self, viewer: Viewer, channel: Any) -> None:
        """An overlay-only viewer opened its data channel: feed it, and keep frames flowing for it."""
        viewer.overlay_channel = channel
        self.overlay.add(channel)
        if not viewer.video and viewer.drain is None:
            viewer.start_drain(self.subscribe_video())

    async def remove_viewer(self, viewer_id: str) -> bool:
        viewer = self.viewers.pop(viewer_id, None)
        if viewer is None:
            return False
        if viewer.overlay_channel is not None:
            self.overlay.discard(viewer.overlay_channel)
        if not self.viewers and not self.track.ended:
            self.track.wanted.clear()
        await viewer.close()
        return True

    # the whole stream

    def stats(self) -> dict:
        """Counters for the API: inferences are counted once per stylized frame, whatever the viewer count."""
        t, r = self.track, self.publisher.reader if self.publisher else None
        return {
            "stream": self.name,
            "live": self.publisher is not None,
            "since": round(self.since, 3),
            "publishers": self.publishers,
            "viewers": sum(1 for v in self.viewers.values() if v.video),
            "overlay_viewers": sum(1 for v in self.viewers.values() if v.overlay_channel is not None),
            "frames_in": self.frames_in_before + (r.frames_in if r else 0),
            "fps_in": round(rate(r.in_times), 1) if r else 0.0,
            "inferences": t.inferences,
            "dropped": self.dropped_before + (r.dropped if r else 0),
            **t.step.stats(),
            "layout": self.pipeline.layer.layout,
        }

    def state(self) -> dict:
        reply = self.pipeline.state.reply()
        reply.pop("type", None)
        return reply

    async def close(self) -> None:
        self.track.end()
        self.audio.close()
        viewers = list(self.viewers)
        await asyncio.gather(*(self.remove_viewer(v) for v in viewers), return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.close()
            self.publisher = None
        self.track.stop()
        self.pipeline.close()


class StreamHub:
    """Every named stream of a server; settings outlive a publisher, so a reconnect keeps its look."""

    def __init__(self, backend: Backend, moods: MoodBook, executor: concurrent.futures.Executor,
                 limits: Limits | None = None) -> None:
        self.backend = backend
        self.moods = moods
        self.executor = executor
        self.limits = limits or Limits()
        self.streams: dict[str, LiveStream] = {}
        self.saved: OrderedDict[str, StyleState] = OrderedDict()  # settings of streams that ended (last 64)
        # Counters of streams that ended, so /metrics totals never go back.
        self.retired = {"dropped": 0, "budget_misses": 0, "errors": 0, "inferences": 0, "frames_in": 0}
        self.observer: Callable[[str, float], None] | None = None  # stage times of every stream (/metrics)

    def stream_for_publish(self, name: str) -> LiveStream:
        stream = self.streams.get(name)
        if stream is None:
            stream = LiveStream(name, self.backend, self.moods, self.executor, self.saved.pop(name, None),
                                self.limits)
            stream.pipeline.times.observer = self.observer
            self.streams[name] = stream

            def fatal(message: str, name: str = name, stream: LiveStream = stream) -> None:
                if self.streams.get(name) is stream:
                    log.error("stream %s: %s; the stream is ended", name, message)
                    asyncio.ensure_future(self.end(name))

            stream.track.step.on_fatal = fatal
        return stream

    async def end(self, name: str, publisher_id: str | None = None) -> bool:
        """End a stream (only if `publisher_id` is still its publisher, when given)."""
        stream = self.streams.get(name)
        if stream is None or (publisher_id is not None and
                              (stream.publisher is None or stream.publisher.id != publisher_id)):
            return False
        del self.streams[name]
        last = stream.stats()
        for key in self.retired:
            self.retired[key] += last.get(key, 0)
        self.saved[name] = stream.pipeline.state
        while len(self.saved) > 64:
            self.saved.popitem(last=False)
        await stream.close()
        log.info("stream %s ended", name)
        return True

    async def close(self) -> None:
        await asyncio.gather(*(self.end(n) for n in list(self.streams)), return_exceptions=True)

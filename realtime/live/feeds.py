"""WHIP ingest, WHEP egress and the viewer page: streams for OBS and other stream tools.

Routes (registered by `setup`; the control API is in realtime/live/api.py):
    POST    /whip                 publish to the stream "live" (body: SDP offer, application/sdp)
    POST    /whip/{stream}        publish to a named stream -> 201, SDP answer, Location: http://HOST/whip/{stream}/{id}
    DELETE  /whip/{stream}/{id}   stop publishing; the stream ends and its viewers are closed
    POST    /whep/{stream}        pull the stylized stream -> 201, SDP answer, Location: http://HOST/whep/{stream}/{id}
    DELETE  /whep/{stream}/{id}   stop pulling
    GET     /view/{stream}        the viewer page (no controls; ?overlay=1 for the expression layer alone)

ICE is gathered completely before answering (aiortc always does), since OBS does not trickle;
PATCH (trickle ICE, ICE restart) is therefore answered 405. Auth: realtime/live/auth.py.
Publishing again to a live name replaces its publisher (OBS reconnecting) and keeps the viewers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from engines.backends import Backend
from realtime.expression.moods import MoodBook
from realtime.live import api, ice, playout
from realtime.live.auth import refusal
from realtime.live.guard import guarded
from realtime.live.limits import (
    MAX_OFFER_BYTES,
    RUNTIME_KEY,
    Limits,
    Runtime,
    Slot,
    read_body,
    refuse_peer,
    watch_connect,
)
from realtime.live.streams import LiveStream, Publisher, StreamHub, Viewer
from realtime.live.track import close_pc

log = logging.getLogger("realtime.feeds")

DEFAULT_STREAM = "live"
STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_SDP_BYTES = MAX_OFFER_BYTES
SDP = "application/sdp"


@dataclass
class Feeds:
    hub: StreamHub
    token: str | None
    pages: Path  # web/, where view.html is


FEEDS_KEY = web.AppKey("feeds", Feeds)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _stream_name(request: web.Request) -> str | None:
    name = request.match_info.get("stream", DEFAULT_STREAM)
    return name if STREAM_NAME.fullmatch(name) else None


def _absolute(request: web.Request, path: str) -> str:
    """Location as an absolute URL: every WHIP client resolves it, old OBS builds included."""
    return str(request.url.origin().with_path(path))


async def _read_offer(request: web.Request) -> str | web.Response:
    """The SDP offer of a WHIP/WHEP POST, or the error response."""
    if request.content_type != SDP:
        return _error(415, f"send the SDP offer as Content-Type: {SDP}")
    if request.content_length is not None and request.content_length > MAX_SDP_BYTES:
        return _error(413, f"offer too large (limit {MAX_SDP_BYTES} bytes)")
    rt = _runtime(request)
    raw = await read_body(request, MAX_SDP_BYTES, (rt.limits if rt is not None else Limits()).body_timeout_s)
    if isinstance(raw, web.Response):
        return raw
    try:
        sdp = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "invalid offer: not UTF-8 text")
    if not sdp.lstrip().startswith("v=0"):
        return _error(400, "invalid offer: an SDP offer starts with 'v=0'")
    return ice.keep_loopback_candidates(sdp) if ice.loopback_enabled() else sdp


def _answer(request: web.Request, sdp: str, location: str) -> web.Response:
    return web.Response(status=201, text=sdp, content_type=SDP,
                        headers={"Location": _absolute(request, location), "Cache-Control": "no-store"})


def _checked(request: web.Request) -> tuple[Feeds, str] | web.Response:
    """Auth first (so nothing is revealed to a stranger), then the stream name."""
    feeds = request.app[FEEDS_KEY]
    refused = refusal(request, feeds.token)
    if refused is not None:
        return refused
    name = _stream_name(request)
    if name is None:
        return _error(400, "stream names are 1-64 letters, digits, '-' or '_'")
    return feeds, name


async def _admit(request: web.Request, kind: str) -> tuple[Feeds, str, str, Slot | None] | web.Response:
    """_checked, the per-client offer rate, the offer read in full and checked, and only then a peer slot
    (503 when the server is full, 429 when this address holds its share): a slow body holds nothing."""
    checked = _checked(request)
    if isinstance(checked, web.Response):
        return checked
    feeds, name = checked
    rt = request.app.get(RUNTIME_KEY)
    if rt is not None and not rt.offers.allow(request.remote):
        return web.json_response({"error": f"too many offers from this address: at most {rt.offers.rate:g} per "
                                           f"second (burst {rt.offers.burst:g}); try again shortly"},
                                 status=429, headers={"Retry-After": str(rt.offers.retry_after_s())})
    offer = await _read_offer(request)
    if isinstance(offer, web.Response):
        return offer
    if rt is None:  # the feeds without the server around them (unit tests): no limits
        return feeds, name, offer, None
    slot = rt.peers.admit(kind, request.remote)
    if isinstance(slot, str):
        return refuse_peer(rt, slot, f"WHIP/WHEP {kind}")
    return feeds, name, offer, slot


def _runtime(request: web.Request) -> Runtime | None:
    return request.app.get(RUNTIME_KEY)


def _new_pc(request: web.Request) -> RTCPeerConnection:
    pc = RTCPeerConnection(ice.rtc_configuration())
    rt = _runtime(request)
    return rt.peers.track(pc) if rt is not None else pc


async def _watch_publisher(feeds: Feeds, name: str, publisher: Publisher, limits: Limits) -> None:
    """End a stream whose publisher never connects or stops sending video (gone without a DELETE)."""
    start = time.monotonic()
    pc = publisher.pc
    while True:
        await asyncio.sleep(0.5)
        state = pc.connectionState
        if state in ("failed", "closed"):
            return
        why = ""
        if state != "connected" and time.monotonic() - start > limits.connect_timeout_s:
            why = f"did not connect within {limits.connect_timeout_s:g} s"
        elif state == "connected" and time.monotonic() - publisher.reader.last_arrival > limits.idle_timeout_s:
            why = f"no video for {limits.idle_timeout_s:g} s"
        if why:
            log.info("WHIP: publisher %s of stream %s %s; stream ended", publisher.id, name, why,
                     extra={"stream": name, "peer": publisher.id})
            await feeds.hub.end(name, publisher.id)
            return


def failure_reason(pc: RTCPeerConnection, offer: str) -> str:
    """Why a peer went to "failed", for the log: ICE, or DTLS after ICE (with the known cause for FFmpeg)."""
    dtls = next((t.receiver.transport for t in pc.getTransceivers() if t.receiver.transport is not None), None)
    if dtls is None or dtls.state != "failed":
        return "ICE found no path (firewall or NAT: see --ice-server)"
    if "cname:FFmpeg" in offer:
        # FFmpeg 8.1 built with GnuTLS (PyAV's wheels) makes itself a P-224 certificate, which OpenSSL 4 refuses.
        return ("DTLS handshake failed; FFmpeg's WHIP muxer needs a P-256 certificate here: pass -cert_file and "
                "-key_file (docs/obs.md)")
    return "DTLS handshake failed (the client must offer an ECDSA P-256 certificate and ECDHE-ECDSA ciphers, as RFC 8827 asks)"


# ---------------------------------------------------------------- WHIP


async def whip_publish(request: web.Request) -> web.Response:
    admitted = await _admit(request, "publisher")
    if isinstance(admitted, web.Response):
        return admitted
    feeds, name, offer, slot = admitted
    pc = _new_pc(request)
    received: dict[str, list[MediaStreamTrack]] = {"video": [], "audio": []}
    pc.on("track", guarded(lambda track: received.setdefault(track.kind, []).append(track), "WHIP track",
                           {"stream": name}))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        if not received["video"]:
            raise ValueError("the offer sends no video")
        used = (received["video"][0], received["audio"][0] if received["audio"] else None)
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track not in used:
                transceiver.direction = "inactive"  # one video and one audio track are used; the rest not received
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001  (aiortc raises ValueError/KeyError/... for bad SDP)
        await close_pc(pc)
        if slot is not None:
            slot.release()
        msg = (str(exc) or type(exc).__name__).splitlines()[0][:200]
        log.info("WHIP offer for %s refused: %s", name, msg, extra={"stream": name})
        return _error(400, f"invalid offer: {msg}")

    audio = received["audio"][0] if received["audio"] else None
    publisher = Publisher(pc, received["video"][0], audio, slot)
    stream = feeds.hub.stream_for_publish(name)
    await stream.attach(publisher)

    async def on_state() -> None:
        if pc.connectionState == "failed":
            log.warning("WHIP: publisher %s of stream %s could not connect: %s", publisher.id, name,
                        failure_reason(pc, offer), extra={"stream": name, "peer": publisher.id})
        # hub.end is a no-op if a newer publisher took over (attach closed this one, which freed its slot).
        if pc.connectionState in ("failed", "closed") and not await feeds.hub.end(name, publisher.id) \
                and slot is not None:
            slot.release()

    pc.on("connectionstatechange", guarded(on_state, "WHIP connection state", {"stream": name}))

    rt = _runtime(request)
    if rt is not None:
        publisher.tasks.append(asyncio.ensure_future(_watch_publisher(feeds, name, publisher, rt.limits)))
    log.info("WHIP: stream %s published (%s)%s", name, publisher.id,
             " with audio" if publisher.audio is not None else "", extra={"stream": name, "peer": publisher.id})
    return _answer(request, ice.add_bitrate_hints(pc.localDescription.sdp), f"/whip/{name}/{publisher.id}")


async def whip_delete(request: web.Request) -> web.Response:
    checked = _checked(request)
    if isinstance(checked, web.Response):
        return checked
    feeds, name = checked
    if not await feeds.hub.end(name, request.match_info["id"]):
        return _error(404, f"no WHIP session {request.match_info['id']!r} on stream {name!r}")
    return web.Response(status=200)


# ---------------------------------------------------------------- WHEP


def _viewer_channel(stream: LiveStream, viewer: Viewer, channel: Any) -> None:
    """Keep a viewer's first `overlay` and first `status` channel; close any other (never held for nothing).

    `status` carries nothing: the viewer page opens it to learn at once when the session ends (it closes with
    the peer connection), so closing it here would read as "stream ended" and make the page reconnect."""
    if channel.label == "overlay" and viewer.overlay_channel is None:
        stream.set_overlay_channel(viewer, channel)
    elif channel.label == "status" and viewer.status_channel is None:
        viewer.status_channel = channel
    else:
        channel.close()


async def whep_view(request: web.Request) -> web.Response:
    admitted = await _admit(request, "viewer")
    if isinstance(admitted, web.Response):
        return admitted
    feeds, name, offer, slot = admitted
    stream = feeds.hub.streams.get(name)
    if stream is None:
        if slot is not None:
            slot.release()
        return _error(404, f"stream {name!r} is not live")
    pc = _new_pc(request)
    viewer = Viewer(pc, slot)

    pc.on("datachannel", guarded(lambda channel: _viewer_channel(stream, viewer, channel), "WHEP data channel",
                                 {"stream": name, "peer": viewer.id}))

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        kinds = {t.kind for t in pc.getTransceivers()}
        if not kinds and "m=application" not in offer:
            raise ValueError("the offer asks for no video, audio or data channel")
        if "video" in kinds:
            viewer.tracks.append(stream.subscribe_video())
        if "audio" in kinds:
            viewer.tracks.append(stream.audio.subscribe())
        for track in viewer.tracks:
            playout.low_latency(pc.addTrack(track))  # video only: audio keeps its own path
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001  (as above)
        await viewer.close()
        msg = (str(exc) or type(exc).__name__).splitlines()[0][:200]
        log.info("WHEP offer for %s refused: %s", name, msg, extra={"stream": name})
        return _error(400, f"invalid offer: {msg}")
    if feeds.hub.streams.get(name) is not stream:  # the stream ended while we answered
        await viewer.close()
        return _error(404, f"stream {name!r} is not live")
    stream.add_viewer(viewer)

    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await stream.remove_viewer(viewer.id)

    pc.on("connectionstatechange", guarded(on_state, "WHEP connection state", {"stream": name, "peer": viewer.id}))

    rt = _runtime(request)
    if rt is not None:
        viewer.tasks.append(watch_connect(pc, rt.limits.connect_timeout_s, lambda: stream.remove_viewer(viewer.id),
                                          f"WHEP viewer {viewer.id} of stream {name}"))
    log.info("WHEP: viewer %s on stream %s (%d watching)", viewer.id, name, len(stream.viewers),
             extra={"stream": name, "peer": viewer.id})
    return _answer(request, pc.localDescription.sdp, f"/whep/{name}/{viewer.id}")


async def whep_delete(request: web.Request) -> web.Response:
    checked = _checked(request)
    if isinstance(checked, web.Response):
        return checked
    feeds, name = checked
    stream = feeds.hub.streams.get(name)
    if stream is None or not await stream.remove_viewer(request.match_info["id"]):
        return _error(404, f"no WHEP session {request.match_info['id']!r} on stream {name!r}")
    return web.Response(status=200)


async def options(request: web.Request) -> web.Response:
    """What WHIP/WHEP clients may ask before POSTing."""
    return web.Response(status=204, headers={"Accept-Post": SDP, "Allow": "OPTIONS, POST"})


# ---------------------------------------------------------------- viewer page


async def view_page(request: web.Request) -> web.StreamResponse:
    if _stream_name(request) is None:
        raise web.HTTPNotFound()
    return web.FileResponse(request.app[FEEDS_KEY].pages / "view.html", headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------- wiring


def setup(app: web.Application, backend: Backend, moods: MoodBook, executor: concurrent.futures.Executor,
          token: str | None, pages: Path) -> StreamHub:
    """Register WHIP, WHEP, the viewer page (pages/view.html) and the control API on `app`; returns the hub."""
    rt = app.get(RUNTIME_KEY)
    hub = StreamHub(backend, moods, executor, rt.limits if rt is not None else None)
    app[FEEDS_KEY] = Feeds(hub, token, pages)
    app.router.add_route("OPTIONS", "/whip", options)
    app.router.add_post("/whip", whip_publish)
    app.router.add_route("OPTIONS", "/whip/{stream}", options)
    app.router.add_post("/whip/{stream}", whip_publish)
    app.router.add_delete("/whip/{stream}/{id}", whip_delete)
    app.router.add_route("OPTIONS", "/whep/{stream}", options)
    app.router.add_post("/whep/{stream}", whep_view)
    app.router.add_delete("/whep/{stream}/{id}", whep_delete)
    app.router.add_get("/view/{stream}", view_page)
    api.setup(app, hub, token)

    async def close(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(close)
    return hub

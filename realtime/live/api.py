"""The control API: list the live streams, change a stream's look while it runs, read its stats.

    GET   /api/streams                  {"streams": [{"stream", "state", "stats"}, ...]}
    GET   /api/streams/{stream}         {"stream", "state", "stats"}
    POST  /api/streams/{stream}         body: a control message, exactly as on the data channel
                                        (docs/protocol.md) -> {"type": "state", ...} like the data channel's reply
    GET   /api/streams/{stream}/stats   the stats alone

Validation is the data channel's (realtime.live.control.parse_control), and so is the rate limit
(20 per second, bursts of 40, per stream: 429 past that). POST bodies must be
Content-Type: application/json, which also keeps other web sites from posting here
(a cross-origin JSON POST needs a CORS preflight, which this server does not grant).
Bodies are at most 4 KiB (413 past that); each client address may make 20 API requests a second
(bursts of 40) besides the per-stream limit.
A body not received within --body-timeout is answered 408. A message the parser refuses (bad JSON, invalid
UTF-8, lone surrogates, numbers out of range, deep nesting) is a 400 with the data channel's error text.
Errors: {"error": message} with 400, 401/403 (realtime/live/auth.py), 404, 408, 413, 415 or 429.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from realtime.live.auth import refusal
from realtime.live.control import MAX_MESSAGE_BYTES, ControlError, parse_control
from realtime.live.limits import RUNTIME_KEY, Limits, read_body
from realtime.live.streams import LiveStream, StreamHub


@dataclass
class Api:
    hub: StreamHub
    token: str | None


API_KEY = web.AppKey("control_api", Api)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _find(request: web.Request) -> LiveStream | web.Response:
    api = request.app[API_KEY]
    refused = refusal(request, api.token)
    if refused is not None:
        return refused
    name = request.match_info.get("stream")
    if name is None:
        return _error(404, "no stream given")
    stream = api.hub.streams.get(name)
    if stream is None:
        live = ", ".join(sorted(api.hub.streams)) or "none"
        return _error(404, f"stream {name!r} is not live (live: {live})")
    return stream


def _describe(stream: LiveStream) -> dict:
    return {"stream": stream.name, "state": stream.state(), "stats": stream.stats()}


async def list_streams(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    refused = refusal(request, api.token)
    if refused is not None:
        return refused
    return web.json_response({"streams": [_describe(s) for _, s in sorted(api.hub.streams.items())]})


async def get_stream(request: web.Request) -> web.Response:
    stream = _find(request)
    return stream if isinstance(stream, web.Response) else web.json_response(_describe(stream))


async def get_stats(request: web.Request) -> web.Response:
    stream = _find(request)
    return stream if isinstance(stream, web.Response) else web.json_response(stream.stats())


async def update_stream(request: web.Request) -> web.Response:
    refused = refusal(request, request.app[API_KEY].token)
    if refused is not None:
        return refused
    if request.content_type != "application/json":
        return _error(415, "send the control message as Content-Type: application/json")
    if request.content_length is not None and request.content_length > MAX_MESSAGE_BYTES:
        return _error(413, f"control message too large (limit {MAX_MESSAGE_BYTES} bytes)")
    stream = _find(request)
    if isinstance(stream, web.Response):
        return stream
    rt = request.app.get(RUNTIME_KEY)
    if rt is not None and not rt.api.allow(request.remote):
        return _error(429, f"too many API requests from this address: at most {rt.api.rate:g} per second "
                           f"(burst {rt.api.burst:g})")
    if not stream.control_bucket.allow():
        b = stream.control_bucket
        if rt is not None:
            rt.control_dropped += 1
        return _error(429, f"too many control messages: at most {b.rate:g} per second (burst {b.burst:g})")
    timeout_s = (rt.limits if rt is not None else Limits()).body_timeout_s
    raw = await read_body(request, MAX_MESSAGE_BYTES, timeout_s)  # a chunked body without a length stops too
    if isinstance(raw, web.Response):
        return raw
    try:
        update = parse_control(raw, stream.pipeline.backend.style_names)
    except ControlError as exc:
        return _error(400, str(exc))
    state, notes = stream.pipeline.apply_with_notes(update)
    reply = state.reply()
    if notes:
        reply["notice"] = " / ".join(notes)
    if update.id is not None:
        reply["id"] = update.id
    return web.json_response(reply)


def setup(app: web.Application, hub: StreamHub, token: str | None) -> None:
    """Register the /api/streams routes."""
    app[API_KEY] = Api(hub, token)
    app.router.add_get("/api/streams", list_streams)
    app.router.add_get("/api/streams/{stream}", get_stream)
    app.router.add_post("/api/streams/{stream}", update_stream)
    app.router.add_get("/api/streams/{stream}/stats", get_stats)

"""Your own styles over HTTP: add (fit), list, rename and delete, behind the token and Host rules.

    GET    /api/styles                 {"styles": [{name, thumb, kind: trained|user}], "jobs": [...],
                                        "fit": {"available", "error"}, "limits": ..., "caption_kinds": [...]}
    POST   /api/styles                 multipart/form-data: name, 1-3 `image` files, optional `weights`
                                        ("1,0.5" or one field per picture) -> 202 {"job": {...}}
    GET    /api/styles/jobs/{id}       a fit's state, progress (0-1) and ETA in seconds
    DELETE /api/styles/jobs/{id}       cancel a queued or running fit
    PATCH  /api/styles/{name}          JSON {"name": NEW}: rename a user style
    DELETE /api/styles/{name}          delete a user style

A fit runs in its own process, one at a time (realtime/live/style_jobs.py). When it is done the style
is in every session's bank at once: the control channel accepts its name, /api/styles lists it.
Errors are {"error": message}: 400 (bad picture, name or weights), 401/403, 404, 409 (name taken),
413 (over 10 MB a picture), 429 (queue full), 503 (the fit's packages are not installed).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
from typing import Any

from aiohttp import web

from engines.style_fit import FitUnavailable, check_fit_available
from engines.style_library import (
    MAX_BYTES,
    MAX_PICTURES,
    StorageFull,
    StyleConflict,
    StyleError,
    StyleLibrary,
    StyleNotFound,
    check_name,
    check_weights,
    read_picture,
)
from realtime.expression.emoji import MAX_STICKERS
from realtime.expression.moods import MAX_MOOD_CHARS
from realtime.expression.overlay import KINDS, MAX_CAPTION_CHARS
from realtime.live.auth import refusal
from realtime.live.limits import RUNTIME_KEY, read_body
from realtime.live.style_jobs import FitQueue

FITS_KEY = web.AppKey("style_fits", FitQueue)
TOKEN_KEY = web.AppKey("style_token", str)
FIT_ERROR_KEY = web.AppKey("style_fit_error", str)
BODY_LIMIT = MAX_PICTURES * MAX_BYTES + 256 * 1024  # three full-size pictures and the form around them
UPLOAD_TIMEOUT_S = 120.0


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _status(exc: StyleError) -> int:
    if isinstance(exc, StyleConflict):
        return 409
    if isinstance(exc, StyleNotFound):
        return 404
    if isinstance(exc, StorageFull):
        return 507
    return 400


def _gate(request: web.Request) -> web.Response | None:
    refused = refusal(request, request.app[TOKEN_KEY] or None)
    if refused is not None:
        return refused
    rt = request.app.get(RUNTIME_KEY)
    if rt is not None and not rt.api.allow(request.remote):
        return _error(429, f"too many API requests from this address: at most {rt.api.rate:g} per second")
    return None


def style_items(fits: FitQueue) -> list[dict]:
    bank = fits.backend.styles
    return [{"name": n, "thumb": f"/thumbs/{n}.jpg", "kind": "trained" if i < bank.num_trained else "user"}
            for i, n in enumerate(bank.names)]


def listing(app: web.Application) -> dict:
    """The styles part of GET /api/styles (realtime/live/server.py adds the page's limits)."""
    fits = app[FITS_KEY]
    error = app[FIT_ERROR_KEY] or None
    return {"styles": style_items(fits), "jobs": [j.describe() for j in fits.jobs.values()],
            "fit": {"available": error is None, "error": error, "max_pictures": MAX_PICTURES,
                    "max_mb": MAX_BYTES // (1024 * 1024)}}


def _parse_form(content_type: str, body: bytes) -> tuple[dict[str, list[str]], list[tuple[str, bytes]]]:
    """multipart/form-data -> (text fields, [(filename, bytes)] of the `image` parts)."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not msg.is_multipart():
        raise StyleError("send the pictures as multipart/form-data")
    fields: dict[str, list[str]] = {}
    files: list[tuple[str, bytes]] = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if name == "image":
            files.append((part.get_filename() or f"picture {len(files) + 1}", payload))
        elif name:
            fields.setdefault(str(name), []).append(payload.decode("utf-8", "replace"))
    return fields, files


def _weights(fields: dict[str, list[str]]) -> list[float] | None:
    raw = [w for v in fields.get("weights", []) for w in v.replace(" ", ",").split(",") if w.strip()]
    if not raw:
        return None
    try:
        return [float(w) for w in raw]
    except ValueError:
        raise StyleError(f"weights must be numbers, got {', '.join(raw)}") from None


def page_limits() -> dict[str, Any]:
    """What GET /api/styles tells the page besides the styles: its input limits and caption kinds."""
    limits = {"caption_chars": MAX_CAPTION_CHARS, "emoji": MAX_STICKERS, "mood_chars": MAX_MOOD_CHARS}
    return {"limits": limits, "caption_kinds": list(KINDS)}


async def list_styles(request: web.Request) -> web.Response:
    refused = refusal(request, request.app[TOKEN_KEY] or None)
    if refused is not None:
        return refused
    return web.json_response({**listing(request.app), **page_limits()})


async def add_style(request: web.Request) -> web.Response:
    refused = _gate(request)
    if refused is not None:
        return refused
    if request.app[FIT_ERROR_KEY]:
        return _error(503, request.app[FIT_ERROR_KEY])
    if not request.content_type.startswith("multipart/form-data"):
        return _error(415, "send the pictures as multipart/form-data (fields: name, image x1-3, weights)")
    raw = await read_body(request, BODY_LIMIT, UPLOAD_TIMEOUT_S)
    if isinstance(raw, web.Response):
        return raw
    fits = request.app[FITS_KEY]
    try:
        fields, files = _parse_form(request.headers.get("Content-Type", ""), raw)
        name = check_name((fields.get("name") or [""])[0].strip(), (*fits.taken(), *fits.library.names()))
        if not 1 <= len(files) <= MAX_PICTURES:
            raise StyleError(f"a style takes 1 to {MAX_PICTURES} pictures, got {len(files)}")
        for fname, data in files:
            if len(data) > MAX_BYTES:
                return _error(413, f"{fname}: {len(data) / 1e6:.1f} MB is over the "
                                   f"{MAX_BYTES // (1024 * 1024)} MB limit")
        weights = check_weights(_weights(fields), len(files))
        pictures = await asyncio.to_thread(lambda: [read_picture(d, f) for f, d in files])
        job = fits.submit(name, pictures, weights, [f for f, _ in files])
    except StyleError as exc:
        status = 429 if "already waiting" in str(exc) else _status(exc)
        return _error(status, str(exc))
    return web.json_response({"job": job.describe()}, status=202)


async def get_job(request: web.Request) -> web.Response:
    refused = refusal(request, request.app[TOKEN_KEY] or None)
    if refused is not None:
        return refused
    job = request.app[FITS_KEY].jobs.get(request.match_info["id"])
    if job is None:
        return _error(404, "no such fit")
    return web.json_response({"job": job.describe()})


async def cancel_job(request: web.Request) -> web.Response:
    refused = _gate(request)
    if refused is not None:
        return refused
    try:
        job = request.app[FITS_KEY].cancel(request.match_info["id"])
    except KeyError:
        return _error(404, "no such fit")
    return web.json_response({"job": job.describe()})


def _user_style(request: web.Request) -> str | web.Response:
    fits = request.app[FITS_KEY]
    name = request.match_info["name"]
    if name in fits.backend.styles.names[: fits.backend.styles.num_trained]:
        return _error(400, f"{name!r} is one of the model's own styles; only your styles can be changed")
    return name


def _gated_user_style(request: web.Request) -> str | web.Response:
    """The user style a request names, or the response that refuses it (token, Host, or not a user style)."""
    refused = _gate(request)
    return refused if refused is not None else _user_style(request)


async def delete_style(request: web.Request) -> web.Response:
    name = _gated_user_style(request)
    if isinstance(name, web.Response):
        return name
    fits = request.app[FITS_KEY]
    try:
        await asyncio.to_thread(fits.library.remove, name)
    except StyleError as exc:
        return _error(_status(exc), str(exc))
    fits.reload()
    return web.json_response({"deleted": name})


async def rename_style(request: web.Request) -> web.Response:
    name = _gated_user_style(request)
    if isinstance(name, web.Response):
        return name
    raw = await read_body(request, 4096, 10.0)
    if isinstance(raw, web.Response):
        return raw
    fits = request.app[FITS_KEY]
    try:
        body = json.loads(raw)
        new = body.get("name") if isinstance(body, dict) else None
        await asyncio.to_thread(fits.library.rename, name, str(new or ""), fits.taken())
    except (ValueError, UnicodeDecodeError) as exc:
        status = _status(exc) if isinstance(exc, StyleError) else 400
        return _error(status, str(exc) if isinstance(exc, StyleError) else 'send JSON {"name": "new-name"}')
    fits.reload()
    return web.json_response({"renamed": name, "name": new})


def user_thumb(app: web.Application, name: str):  # -> Path | None
    try:
        return app[FITS_KEY].library.get(name).thumb
    except StyleError:
        return None


async def _startup(app: web.Application) -> None:
    fits = app[FITS_KEY]
    stale = fits.library.stale(fits.sha)
    if stale and not app[FIT_ERROR_KEY]:
        fits.refit_stale()  # fitted for another model: refit from the stored references
    elif stale:
        print(f"realtime: styles {', '.join(stale)} were fitted for another model and cannot be refitted here "
              f"({app[FIT_ERROR_KEY]})", flush=True)


async def _cleanup(app: web.Application) -> None:
    await app[FITS_KEY].close()


def setup(app: web.Application, fits: FitQueue, token: str | None) -> None:
    """Register the /api/styles routes (GET /api/styles included)."""
    app[FITS_KEY] = fits
    app[TOKEN_KEY] = token or ""
    try:
        check_fit_available()
        app[FIT_ERROR_KEY] = ""
    except FitUnavailable as exc:
        app[FIT_ERROR_KEY] = str(exc)
    app.router.add_get("/api/styles", list_styles)
    app.router.add_post("/api/styles", add_style)
    app.router.add_get("/api/styles/jobs/{id}", get_job)
    app.router.add_delete("/api/styles/jobs/{id}", cancel_job)
    app.router.add_patch("/api/styles/{name}", rename_style)
    app.router.add_delete("/api/styles/{name}", delete_style)
    app.on_startup.append(_startup)
    app.on_cleanup.append(_cleanup)


__all__ = ["FITS_KEY", "StyleLibrary", "listing", "setup", "user_thumb"]

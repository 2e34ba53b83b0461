"""Who may publish, pull and control streams (WHIP, WHEP, the control API).

- With a token (`realtime serve --token T`, or env STYLIZER_TOKEN): every request needs
  `Authorization: Bearer T`; a missing or wrong token gets 401.
- Without a token: loopback clients (127.0.0.0/8, ::1) are let in without one, anything else
  gets 403. This keeps a token-less server usable from OBS on the same machine without
  exposing it to the network. DNS rebinding (a web page whose name resolves to 127.0.0.1) is
  stopped by the Host check in realtime/live/security.py.
- `--insecure` (no token, on purpose): everyone is let in.

Every control and signaling route calls `refusal` first: POST /offer, WHIP, WHEP, /api/streams,
/metrics and /debug/resources.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from aiohttp import web

TOKEN_ENV = "STYLIZER_TOKEN"


def token_from_env(cli_token: str | None) -> str | None:
    """The token in force: --token wins over STYLIZER_TOKEN; empty means none."""
    token = cli_token if cli_token is not None else os.environ.get(TOKEN_ENV)
    return token or None


def is_loopback(remote: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback)."""
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


def bearer(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer ...` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def refusal(request: web.Request, token: str | None) -> web.Response | None:
    """None when the request may go on; else the 401/403 response to return."""
    from realtime.live.security import POLICY_KEY

    given = bearer(request)
    if token is None:
        policy = request.app.get(POLICY_KEY)
        if is_loopback(request.remote) or (policy is not None and policy.open):
            return None
        return web.json_response(
            {"error": "this server has no token, so only clients on this machine may use it; "
                      "start it with --token (or STYLIZER_TOKEN) to allow others"}, status=403)
    # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes; encoding them back the same way
    # compares the bytes the client sent (a strict encode raised, and a stray byte made a 500).
    if given is not None and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode()):
        return None
    why = "missing bearer token" if given is None else "wrong bearer token"
    return web.json_response({"error": f"{why}: send 'Authorization: Bearer TOKEN'"}, status=401,
                             headers={"WWW-Authenticate": 'Bearer realm="stylizer"'})

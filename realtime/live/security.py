"""Who may reach the server, from where, and what its logs may say.

- Bind: 127.0.0.1 by default. Any other address needs a token (--token / STYLIZER_TOKEN), or an
  explicit --insecure (warned about), so a server is never opened to a network by accident.
- Host check (DNS rebinding): without a token, only requests whose Host is a loopback name or the
  bound address are served; a web page on another name that resolves to 127.0.0.1 gets 403.
- Origin / CORS: browsers may call the server only from its own origin, unless --cors-origin names
  another one; then that origin gets CORS headers (and preflights) for the API and signaling routes.
  A cross-origin POST/DELETE from any other origin gets 403 before it reaches a handler.
- Errors are JSON ({"error": ...}) everywhere, including aiohttp's own 404/405/413. An unexpected exception
  is a 500 with only an id; the log gets one line with the same id (realtime/live/guard.py).
- Logs never contain the token: every formatted line passes through a redaction step.
- Logs grow by at most a line per bad request: tracebacks are rate-limited (`TracebackLimiter`), and
  aiohttp's own report of a malformed request is one line, never a traceback.
- TLS: --cert/--key make it an https server (browsers need a secure context for the camera off localhost).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from realtime.live.guard import describe, record
from realtime.live.ratelimit import TokenBucket

log = logging.getLogger("realtime.security")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_HEADERS = "Authorization, Content-Type"


class SecurityError(ValueError):
    """A start-up setting that would make the server unsafe; str() is the one line printed."""


@dataclass
class Policy:
    """The server's access policy (from `realtime serve` options)."""

    token: str | None = None
    insecure: bool = False                   # --insecure: no token and open to anyone who can reach it
    cors_origins: tuple[str, ...] = ()       # --cors-origin: extra origins browsers may call from
    bind_hosts: frozenset[str] = field(default_factory=frozenset)  # names the server was bound to (Host check)

    @property
    def open(self) -> bool:
        """Anyone may use the control and signaling routes without a token."""
        return self.token is None and self.insecure


POLICY_KEY = web.AppKey("policy", Policy)


def is_loopback_host(host: str) -> bool:
    """True for localhost names and loopback addresses (127.0.0.0/8, ::1), with or without brackets."""
    h = host.strip().lower().strip("[]")
    if h in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure: bool) -> list[str]:
    """Refuse a network-facing bind without a token (SecurityError); returns warnings to log."""
    if is_loopback_host(host):
        return []
    if token is None and not insecure:
        raise SecurityError(f"--host {host} would open the server to the network without a token: set --token "
                            "(or STYLIZER_TOKEN), or pass --insecure to let anyone who can reach it in")
    if token is None:
        return [(f"--insecure: listening on {host} with no token; anyone who can reach this port may stream "
                 "and control it")]
    return []


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The TLS context for --cert/--key (both or neither)."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SecurityError("--cert and --key go together: give both (PEM files)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SecurityError(f"cannot load --cert {cert} / --key {key}: {exc}") from None
    return ctx


def _host_name(request: web.Request) -> str:
    host = request.headers.get("Host", "")
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.headers.get('Host', '')}".lower()


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON; an unexpected exception is logged and answered 500 without details."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        reason = exc.reason or "error"
        if exc.status == 413:
            reason = f"request body too large ({exc.text or 'over the limit'})"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
        return json_error(exc.status, reason.lower() if exc.status in (404, 405) else reason, headers)
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception as exc:  # noqa: BLE001  (the route guard: one line in the log, an id for the client)
        fault = record(f"{request.method} {request.path[:200]}", exc)
        return json_error(500, f"internal error {fault} (see the server log)")


def security_middleware(policy: Policy) -> Callable:
    """Host check (tokenless servers), Origin check and CORS."""
    allowed = {o.rstrip("/").lower() for o in policy.cors_origins}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if policy.token is None and not policy.insecure:
            name = _host_name(request)
            if not (is_loopback_host(name) or name.lower() in policy.bind_hosts):
                return json_error(403, f"host {name!r} is not served: this server has no token, so it answers only "
                                       "to 127.0.0.1 / localhost (start it with --token to serve other names)")
        origin = request.headers.get("Origin")
        cross = origin is not None and origin.rstrip("/").lower() != _own_origin(request)
        granted = cross and origin is not None and origin.rstrip("/").lower() in allowed
        if request.method == "OPTIONS" and origin is not None and "Access-Control-Request-Method" in request.headers:
            if cross and not granted:
                return json_error(403, f"cross-origin requests from {origin} are not allowed (see --cors-origin)")
            resp: web.StreamResponse = web.Response(status=204)
        elif cross and not granted and request.method not in ("GET", "HEAD"):
            return json_error(403, f"cross-origin requests from {origin} are not allowed (see --cors-origin)")
        else:
            resp = await handler(request)
        if granted:
            resp.headers["Access-Control-Allow-Origin"] = origin or ""
            resp.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            resp.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            resp.headers["Access-Control-Expose-Headers"] = "Location"
            resp.headers["Access-Control-Max-Age"] = "600"
            resp.headers["Vary"] = "Origin"
        return resp

    return middleware


# ---------------------------------------------------------------- logs


class Redactor(logging.Formatter):
    """Wraps a formatter: the token (and any `token=` query value or bearer credential) never reaches a log."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        import re

        text = self.inner.format(record)
        for secret in self.secrets:
            text = text.replace(secret, "[token]")
        text = re.sub(r"(?i)(token=)[^&\s\"']+", r"\1[token]", text)
        return re.sub(r"(?i)(bearer\s+)[^\s\"',]+", r"\1[token]", text)


class TextFormatter(logging.Formatter):
    """`time level logger: message  session=ID stream=NAME` (the ids of the record, when it has them)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{k}={getattr(record, k)}" for k in ("session", "stream", "peer") if hasattr(record, k))
        return f"{text}  {ids}" if ids else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and session/stream/peer when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        for k in ("session", "stream", "peer"):
            if hasattr(record, k):
                out[k] = getattr(record, k)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TracebackLimiter(logging.Filter):
    """Bounds what a log record may add: a traceback at most `rate` a second (bursts of `burst`); past that,
    the record keeps its one line and names the exception instead. aiohttp's reports of malformed requests
    (a client's fault, logged by aiohttp with a traceback each) are always one line."""

    TRACEBACK = "Traceback (most recent call last)"

    def __init__(self, rate: float = 1 / 60, burst: float = 3) -> None:
        super().__init__()
        self.bucket = TokenBucket(rate=rate, burst=burst, tokens=burst)
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        in_text = isinstance(record.msg, str) and self.TRACEBACK in record.msg
        if exc is None and not in_text:
            return True
        client_fault = record.name.startswith("aiohttp.") and isinstance(exc, HttpProcessingError)
        if not client_fault and self.bucket.allow():
            return True
        self.suppressed += 1
        if in_text:  # aiortc logs some tracebacks as text: keep its last line, the exception
            lines = [ln for ln in record.getMessage().splitlines() if ln.strip()]
            record.msg, record.args = "%s", ((lines[-1] if lines else "")[:300] + " (traceback not logged)",)
        if exc is not None:
            record.msg = f"{record.getMessage()} ({describe(exc)})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        if client_fault:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def setup_logging(fmt: str, secrets: list[str], level: int = logging.INFO) -> None:
    """Root logging to stderr in `fmt` ("text" or "json"), with the secrets redacted and tracebacks bounded."""
    handler = logging.StreamHandler(sys.stderr)
    inner: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    handler.setFormatter(Redactor(inner, secrets))
    handler.addFilter(TracebackLimiter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("aioice").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

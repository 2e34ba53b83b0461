"""Guards for code that hostile input reaches: an unexpected exception never ends a session or the server.

Every data channel callback and every route runs inside a guard. What escapes one is recorded once,
as one log line with a short id (the client gets the same id in its error), and the session or the
server goes on. Tracebacks are rate-limited where the log is written (realtime/live/security.py,
`TracebackLimiter`), so no client can make the log grow by more than one line a request.

`install_sctp_guard()` puts the same guard under aiortc's data channel delivery: aiortc decodes a text
message with a strict UTF-8 decode and asserts on odd channel-open messages inside its DTLS receive loop,
so one bad message from a peer closed its whole connection (video included) before any callback of ours ran.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger("realtime.guard")

MAX_DETAIL_CHARS = 200


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, at most MAX_DETAIL_CHARS, with anything unprintable escaped."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    name = type(exc).__name__
    return f"{name}: {text[:MAX_DETAIL_CHARS]}" if text else name


def record(where: str, exc: BaseException, extra: dict[str, Any] | None = None) -> str:
    """Log one unexpected exception (one line; the traceback as the log's rate limit allows); returns its id."""
    fault = uuid.uuid4().hex[:8]
    log.error("unexpected error %s in %s: %s", fault, where, describe(exc), exc_info=exc, extra=extra or {})
    return fault


def guarded(fn: Callable[..., Any], where: str, extra: dict[str, Any] | None = None,
            on_fault: Callable[[str], None] | None = None) -> Callable[..., Any]:
    """`fn` (a plain or async callback for aiortc/pyee) with every exception recorded instead of raised.

    `on_fault(id)` may tell the client (an error reply); it is guarded too."""

    def fault(exc: BaseException) -> None:
        fid = record(where, exc, extra)
        if on_fault is not None:
            try:
                on_fault(fid)
            except Exception as again:  # noqa: BLE001  (telling the client is best effort)
                log.info("could not report fault %s: %s", fid, describe(again), extra=extra or {})

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001  (the point of the guard)
                fault(exc)
                return None

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (the point of the guard)
            fault(exc)
            return None

    return run


_SCTP_GUARDED = False


def install_sctp_guard() -> None:
    """aiortc's data channel delivery, guarded (idempotent): a text message that is not UTF-8 arrives as a
    `str` holding surrogate escapes (realtime.live.control refuses it with a clear error), and any other exception
    from a channel-open message or a listener is recorded instead of closing the peer connection."""
    global _SCTP_GUARDED
    if _SCTP_GUARDED:
        return
    from aiortc import rtcsctptransport as sctp

    original = sctp.RTCSctpTransport._data_channel_receive

    async def receive(self: Any, stream_id: int, pp_id: int, data: bytes) -> None:
        try:
            if pp_id == sctp.WEBRTC_STRING and stream_id in self._data_channels:
                self._data_channels[stream_id].emit("message", data.decode("utf-8", "surrogateescape"))
                return
            await original(self, stream_id, pp_id, data)
        except Exception as exc:  # noqa: BLE001  (one bad message must not end the connection)
            record(f"data channel delivery (stream {stream_id}, ppid {pp_id})", exc)

    sctp.RTCSctpTransport._data_channel_receive = receive  # type: ignore[method-assign]
    _SCTP_GUARDED = True

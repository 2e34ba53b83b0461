"""The server in this process, on a free loopback port, for tests that poke at it over HTTP and WebRTC."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1:FREE until the block ends; yields the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def raw_request(base: str, request_line: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, bytes]:
    """Send one request exactly as written (no client-side path normalisation); (status, body)."""
    host, port = base.rsplit("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = {"Host": f"{host}:{port}", "Connection": "close", **(headers or {})}
    if body and "Content-Length" not in head and "Transfer-Encoding" not in head:
        head["Content-Length"] = str(len(body))
    data = (request_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body
    writer.write(data)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/") else 0
    return status, raw.partition(b"\r\n\r\n")[2]


class LoopThread:
    """An event loop in a thread: lets a synchronous test (hypothesis) drive a live server and peers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@contextlib.contextmanager
def private_rtc_randoms() -> Iterator[None]:
    """aioice's and aiortc's timers draw from private generators while live peers run, so a Hypothesis test
    beside them keeps its global-random check and their behaviour is unchanged."""
    import aioice.ice
    import aiortc.rtcrtpreceiver
    import aiortc.rtcrtpsender
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        for module in (aioice.ice, aiortc.rtcrtpreceiver, aiortc.rtcrtpsender):
            mp.setattr(module, "random", random.Random())
        yield

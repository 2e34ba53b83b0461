"""What one server takes at most: peers, bodies, request rates, frame sizes; and who holds a peer slot.

Every limit has a clear answer past it:
    peers       503 {"error": "server busy: ..."} with Retry-After (POST /offer, /whip, /whep); past the
                per-address cap, 429 with Retry-After. A slot is taken only once the offer is read in full
                and parsed, so a client that sends its body slowly holds nothing.
    bodies      413 {"error": ...} (offers and SDP 64 KiB, control API 4 KiB); a body not received within
                --body-timeout: 408. Headers not received within --header-timeout: the connection is closed.
    offers      429 {"error": ...} per client address (token bucket), Retry-After
    control     the data channel's error reply, or 429 from the control API (per session/stream and per client)
    frames      bigger than --max-resolution: scaled down for the network, with a notice; over 4x that, or
                smaller than 16x16: a clear error on the data channel (too big ends the session)
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from realtime.live.ratelimit import TokenBucket

log = logging.getLogger("realtime.limits")

MAX_OFFER_BYTES = 64 * 1024     # an SDP offer with every candidate is 3-8 KiB
MAX_API_BYTES = 4096            # one control message (realtime.live.control.MAX_MESSAGE_BYTES)
MIN_FRAME_SIDE = 16             # smaller frames are sent back unchanged (with an error message)
HARD_PIXELS_FACTOR = 4          # frames over max_pixels * this end the session (decoding them alone is too much)
MAX_CLIENTS_TRACKED = 4096      # per-address rate-limit buckets kept (least recently used go first)


@dataclass
class Limits:
    """The server's limits (`realtime serve` options; defaults fit one 2-core machine)."""

    max_peers: int = 8                  # WebRTC peers at once: web sessions + WHIP publishers + WHEP viewers
    max_peers_per_client: int = 6       # ... of which one client address may hold this many (OBS and its viewers
                                        # on one machine hold 5; the rest stay free for other addresses)
    offer_rate: float = 2.0             # offers per second per client address, sustained ...
    offer_burst: float = 10.0           # ... with bursts of this many
    api_rate: float = 20.0              # control API requests per second per client address
    api_burst: float = 40.0
    max_width: int = 1280               # frames over this many pixels (width x height) are scaled down
    max_height: int = 720
    budget_ms: float = 150.0            # a frame's time in the server: decoded -> stylized, handed to the encoder
    connect_timeout_s: float = 10.0     # an answered peer that has not connected by then is closed
    body_timeout_s: float = 10.0        # a request body not received in full by then: 408
    header_timeout_s: float = 10.0      # a connection that has not sent complete request headers by then
                                        # (after opening, or after its last response) is closed
    idle_timeout_s: float = 15.0        # a session or publisher that sent no video for this long is closed
    storm_s: float = 5.0                # every frame failing for this long ends a session (see StormGuard)
    worker_timeout_s: float = 30.0      # an inference call running longer counts as hung: the worker is replaced

    @property
    def max_pixels(self) -> int:
        return self.max_width * self.max_height


class ClientLimiter:
    """A token bucket per client address, for offers and API requests; bounded in how many it remembers."""

    def __init__(self, rate: float, burst: float, max_clients: int = MAX_CLIENTS_TRACKED) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.refused = 0

    def allow(self, client: str | None) -> bool:
        key = client or "?"
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate=self.rate, burst=self.burst, tokens=self.burst)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        ok = bucket.allow()
        if not ok:
            self.refused += 1
        return ok

    def retry_after_s(self) -> int:
        return max(1, round(1.0 / self.rate)) if self.rate > 0 else 60


class Slot:
    """One admitted peer; release() is idempotent."""

    def __init__(self, peers: Peers, kind: str, client: str) -> None:
        self.peers = peers
        self.kind = kind
        self.client = client
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.peers._release(self)


class Peers:
    """Admission (at most `limit` peers at once) and a census of every RTCPeerConnection the server made."""

    KINDS = ("session", "publisher", "viewer")

    def __init__(self, limit: int, per_client: int | None = None) -> None:
        self.limit = limit
        self.per_client = per_client if per_client is not None else limit
        self._held = {k: 0 for k in self.KINDS}
        self._by_client: dict[str, int] = {}   # only addresses holding a slot: bounded by `limit`
        self.refused = 0
        self.refused_client = 0
        self.admitted = 0
        self._pcs: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def count(self) -> int:
        return sum(self._held.values())

    def held(self, kind: str) -> int:
        return self._held[kind]

    def held_by(self, client: str | None) -> int:
        return self._by_client.get(client or "?", 0)

    def admit(self, kind: str, client: str | None = None) -> Slot | str:
        """A slot for one more peer, or why not: "busy" (the server is full) or "client" (this address is)."""
        key = client or "?"
        if self.count >= self.limit:
            self.refused += 1
            return "busy"
        if self._by_client.get(key, 0) >= self.per_client:
            self.refused_client += 1
            return "client"
        self._held[kind] += 1
        self._by_client[key] = self._by_client.get(key, 0) + 1
        self.admitted += 1
        return Slot(self, kind, key)

    def _release(self, slot: Slot) -> None:
        self._held[slot.kind] -= 1
        left = self._by_client.get(slot.client, 0) - 1
        if left > 0:
            self._by_client[slot.client] = left
        else:
            self._by_client.pop(slot.client, None)

    def track(self, pc: Any) -> Any:
        """Remember `pc` (weakly), so leaks show up in /debug/resources."""
        self._pcs.add(pc)
        return pc

    def alive(self) -> int:
        """RTCPeerConnections still in memory (call gc.collect() first for an exact count)."""
        return len(self._pcs)

    def open(self) -> int:
        """RTCPeerConnections not closed yet."""
        return sum(1 for pc in list(self._pcs) if getattr(pc, "connectionState", "closed") != "closed")


def watch_connect(pc: Any, timeout_s: float, on_timeout: Callable[[], Any], what: str) -> asyncio.Task:
    """Close a peer that was answered but never connected (a client that vanished mid-handshake)."""

    async def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pc.connectionState == "connected":
                return
            if pc.connectionState in ("failed", "closed"):
                return
            await asyncio.sleep(0.25)
        log.info("%s did not connect within %.0f s; closed", what, timeout_s)
        result = on_timeout()
        if asyncio.iscoroutine(result):
            await result

    return asyncio.ensure_future(watch())


def scaled_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size a frame is stylized at: itself when small enough, else scaled down to max_pixels (even sides)."""
    if width * height <= max_pixels:
        return width, height
    scale = (max_pixels / (width * height)) ** 0.5
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


class Runtime:
    """The server's shared admission state: limits, peer slots, per-client limiters and retired counters."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.peers = Peers(limits.max_peers, limits.max_peers_per_client)
        self.offers = ClientLimiter(limits.offer_rate, limits.offer_burst)
        self.api = ClientLimiter(limits.api_rate, limits.api_burst)
        self.control_dropped = 0        # data-channel messages refused for rate, sessions that ended included
        # Counters of sessions that ended, so /metrics totals never go back.
        self.retired = {"dropped": 0, "budget_misses": 0, "errors": 0, "overlay_errors": 0, "frames_in": 0,
                        "frames_out": 0}
        self.started = time.time()


RUNTIME_KEY = web.AppKey("runtime", Runtime)


def refuse_peer(rt: Runtime, why: str, what: str) -> web.Response:
    """The answer to a peer that admission refused: 503 when the server is full, 429 when its address is."""
    peers = rt.peers
    if why == "client":
        log.info("%s refused: its address holds %d peers (limit %d per address)", what, peers.per_client,
                 peers.per_client)
        return web.json_response({"error": f"too many peers from this address (limit {peers.per_client} per "
                                           "address); close one or try again later"},
                                 status=429, headers={"Retry-After": "5"})
    log.info("busy: %s refused (%d peers, limit %d)", what, peers.count, peers.limit)
    return web.json_response({"error": f"server busy: {peers.count} peers connected (limit {peers.limit}); "
                                       "try again later"}, status=503, headers={"Retry-After": "5"})


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes | web.Response:
    """The request body, or the error to answer: 413 past `limit` bytes (chunked bodies too: reading stops
    there), 408 when it has not all arrived within `timeout_s` (a client trickling its body holds nothing)."""
    if request.content_length is not None and request.content_length > limit:
        return _body_refused(request, 413, f"request body too large (limit {limit} bytes)")
    data = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.read(limit + 1 - len(data))
                if not chunk:
                    return bytes(data)
                data += chunk
                if len(data) > limit:
                    return _body_refused(request, 413, f"request body too large (limit {limit} bytes)")
    except TimeoutError:
        return _body_refused(request, 408, f"request body not received within {timeout_s:g} s")


def _body_refused(request: web.Request, status: int, message: str) -> web.Response:
    # No keep-alive after a body left unread: aiohttp reads what is left for its lingering time, then closes.
    resp = web.json_response({"error": message}, status=status)
    resp.force_close()
    return resp

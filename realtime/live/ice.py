"""ICE and SDP adjustments for aiortc.

- Loopback mode: aioice never gathers 127.0.0.1, so same-machine tests (headless
  Chromium with --allow-loopback-in-peer-connection) cannot connect. Loopback
  mode makes it gather only 127.0.0.1, and drops the other remote candidates.
- Bitrate hints: Chromium lowers its send resolution under its default
  bandwidth estimate; raising x-google-*-bitrate in the answer keeps 640x360.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiortc import RTCConfiguration

_loopback = False


def enable_loopback() -> None:
    """Make aioice gather only 127.0.0.1 (process-wide)."""
    global _loopback
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    _loopback = True


def loopback_enabled() -> bool:
    return _loopback


def keep_loopback_candidates(sdp: str) -> str:
    """Drop every a=candidate line that is not on 127.0.0.1."""
    lines = sdp.splitlines()
    kept = [ln for ln in lines if not ln.startswith("a=candidate:") or " 127.0.0.1 " in ln]
    return "\r\n".join(kept) + "\r\n"


def add_bitrate_hints(sdp: str, start_kbps: int = 1500, min_kbps: int = 800, max_kbps: int = 4000) -> str:
    """Add x-google bitrate hints to every video codec in an answer."""
    hints = f"x-google-start-bitrate={start_kbps};x-google-min-bitrate={min_kbps};x-google-max-bitrate={max_kbps}"
    out: list[str] = []
    fmtp_seen: set[str] = set()
    lines = sdp.splitlines()
    for ln in lines:
        m = re.match(r"a=fmtp:(\d+) (.*)", ln)
        if m and "apt=" not in m.group(2):
            fmtp_seen.add(m.group(1))
            ln = f"{ln};{hints}"
        out.append(ln)
    # Codecs without an fmtp line (VP8 in aiortc's answer) get one after their rtpmap.
    result: list[str] = []
    for ln in out:
        result.append(ln)
        m = re.match(r"a=rtpmap:(\d+) (VP8|VP9|H264|AV1)/90000", ln)
        if m and m.group(1) not in fmtp_seen:
            result.append(f"a=fmtp:{m.group(1)} {hints}")
    return "\r\n".join(result) + "\r\n"


_ice_servers: list[str] = []


def set_ice_servers(urls: list[str]) -> None:
    """STUN/TURN URLs offered to every peer connection (`realtime serve --ice-server URL`)."""
    _ice_servers[:] = list(urls)


def rtc_configuration() -> RTCConfiguration:
    """Peer-connection settings: no STUN server unless configured.

    aiortc's default asks a public STUN server for a reflexive address, which a server on
    127.0.0.1 or a LAN never needs and which tests on loopback must not do.
    """
    from aiortc import RTCConfiguration, RTCIceServer

    return RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in _ice_servers])

"""The playout-delay RTP header extension (realtime/live/playout.py): its bytes, its negotiation, its packets.

The end-to-end effect (every decoded frame reaches Chromium's screen) is measured by the browser test; the
aiortc round trip checks that the extension is negotiated and carried (tests/test_webrtc_roundtrip.py).
"""

from __future__ import annotations

import pytest
from aiortc import rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

from realtime.live import playout

pytestmark = pytest.mark.unit


def test_known_bytes() -> None:
    # Two 12-bit fields in 10 ms units: min 0, max 5 -> 0x000005; min 10, max 4095 -> 0x001FFF.
    assert playout.encode(0, 50) == b"\x00\x00\x05"
    assert playout.encode(10, 40950) == b"\x00\x1f\xff"
    assert playout.encode(40950, 40950) == b"\xff\xff\xff"
    assert playout.decode(b"\x00\x00\x05") == (0, 50)
    assert playout.decode(b"\x01\x40\x64") == (200, 1000)
    for lo, hi in [(0, 0), (0, 50), (120, 3000), (40950, 40950)]:
        assert playout.decode(playout.encode(lo, hi)) == (lo, hi)


@pytest.mark.parametrize(("lo", "hi", "why"), [
    (60, 50, "0 <= min <= max"), (-10, 50, "0 <= min <= max"), (0, 40960, "max <= 40950"), (0, 55, "10 ms units"),
])
def test_bad_ranges_are_refused(lo: int, hi: int, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        playout.encode(lo, hi)
    with pytest.raises(ValueError, match="3 bytes"):
        playout.decode(b"\x00\x05")


def test_register_once_with_an_id_no_other_extension_uses() -> None:
    from aiortc.codecs import HEADER_EXTENSIONS

    playout.register()
    playout.register()
    mine = [e for e in HEADER_EXTENSIONS["video"] if e.uri == playout.URI]
    assert len(mine) == 1
    others = {e.id for exts in HEADER_EXTENSIONS.values() for e in exts if e.uri != playout.URI}
    assert mine[0].id not in others and 1 <= mine[0].id <= 14


def _params(*exts: tuple[int, str]) -> RTCRtpParameters:
    return RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in exts])


def test_packets_carry_the_delay_beside_aiortcs_own_extensions() -> None:
    negotiated = _params((1, "urn:ietf:params:rtp-hdrext:sdes:mid"), (9, playout.URI))
    sender = playout.PlayoutDelayMap(0, 50)
    sender.configure(negotiated)
    receiver = playout.PlayoutDelayMap()
    receiver.configure(negotiated)

    packet = rtp.RtpPacket(payload_type=96, sequence_number=7, timestamp=3000, ssrc=1234, payload=b"vp8")
    packet.extensions.mid = "0"
    parsed = rtp.RtpPacket.parse(packet.serialize(sender), receiver)
    assert parsed.extensions.mid == "0", "aiortc's own extensions must survive"
    assert parsed.payload == b"vp8"
    assert receiver.received == (0, 50)
    raw = dict(rtp.unpack_header_extensions(*sender.set(packet.extensions)))
    assert raw[9] == b"\x00\x00\x05"


def test_nothing_is_added_where_the_peer_did_not_negotiate_it() -> None:
    sender = playout.PlayoutDelayMap(0, 50)
    sender.configure(_params((1, "urn:ietf:params:rtp-hdrext:sdes:mid")))
    assert not sender.negotiated
    values = rtp.HeaderExtensions(mid="0")
    plain = rtp.HeaderExtensionsMap()
    plain.configure(_params((1, "urn:ietf:params:rtp-hdrext:sdes:mid")))
    assert sender.set(values) == plain.set(values)
    # And with no extension at all, no header extension block.
    bare = playout.PlayoutDelayMap(0, 50)
    bare.configure(_params())
    assert bare.set(rtp.HeaderExtensions()) == (0, b"")


def test_low_latency_takes_video_senders_only() -> None:
    import asyncio

    from aiortc import RTCPeerConnection, VideoStreamTrack
    from aiortc.mediastreams import AudioStreamTrack

    async def run() -> tuple[bool, bool]:
        pc = RTCPeerConnection()
        try:
            video = pc.addTrack(VideoStreamTrack())
            audio = pc.addTrack(AudioStreamTrack())
            took = playout.low_latency(video), playout.low_latency(audio)
            assert isinstance(getattr(video, playout._SENDER_MAP), playout.PlayoutDelayMap)
            assert not isinstance(getattr(audio, playout._SENDER_MAP), playout.PlayoutDelayMap)
            return took
        finally:
            await pc.close()

    assert asyncio.run(run()) == (True, False)

"""The RTP playout-delay header extension: the browser's low-latency render path.

Without it Chromium schedules a WebRTC video by its jitter buffer's render times, and when
two frames land inside one display refresh the compositor shows only the second. On the
2-core test machine 10 to 30 of every 150 stylized frames were decoded but never shown.
A sender that marks its frames "playout delay: min 0, max 50 ms" switches the receiver to
its low-latency renderer (WebRTC `VCMTiming::UseLowLatencyRendering`, Blink
`LowLatencyVideoRendererAlgorithm`): each decoded frame is shown at the next refresh, one
per refresh, and a backlog longer than the maximum (3 frames at 60 Hz) is drained by
dropping, so latency stays bounded. A maximum of 0 is avoided on purpose: WebRTC then also
drops every decodable frame but the newest before decoding.

aiortc neither negotiates nor writes the extension; `register()` adds it to what aiortc
negotiates and `low_latency(sender)` makes one sender write it on every packet.

Wire format (http://www.webrtc.org/experiments/rtp-hdrext/playout-delay): 3 bytes, two
12-bit big-endian fields, the minimum then the maximum delay, in units of 10 ms.
"""

from __future__ import annotations

import logging

from aiortc import RTCRtpSender, rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
UNIT_MS = 10
MAX_MS = 0xFFF * UNIT_MS  # 40.95 s, the largest value 12 bits hold
DEFAULT_MIN_MS = 0
DEFAULT_MAX_MS = 50  # 3 frames at 60 Hz: smooths a 2-frame burst, adds no delay when frames come evenly

log = logging.getLogger("realtime.playout")


def encode(min_ms: int, max_ms: int) -> bytes:
    """The extension's 3 bytes for a delay range in ms (multiples of 10)."""
    if not 0 <= min_ms <= max_ms <= MAX_MS:
        raise ValueError(f"playout delay needs 0 <= min <= max <= {MAX_MS} ms, got {min_ms}..{max_ms}")
    if min_ms % UNIT_MS or max_ms % UNIT_MS:
        raise ValueError(f"playout delay is sent in {UNIT_MS} ms units, got {min_ms}..{max_ms} ms")
    word = (min_ms // UNIT_MS) << 12 | (max_ms // UNIT_MS)
    return word.to_bytes(3, "big")


def decode(value: bytes) -> tuple[int, int]:
    """(min_ms, max_ms) from the extension's 3 bytes."""
    if len(value) != 3:
        raise ValueError(f"the playout-delay extension is 3 bytes, got {len(value)}")
    word = int.from_bytes(value, "big")
    return (word >> 12) * UNIT_MS, (word & 0xFFF) * UNIT_MS


def register() -> None:
    """Offer and accept the extension on video in every aiortc peer of this process (idempotent).

    aiortc answers with the extensions that both its table and the offer name, at the offer's
    id, so the id chosen here only matters in offers aiortc makes itself.
    """
    from aiortc.codecs import HEADER_EXTENSIONS

    video = HEADER_EXTENSIONS["video"]
    if any(ext.uri == URI for ext in video):
        return
    # With BUNDLE the id space is shared between audio and video: take one neither uses.
    used = {ext.id for exts in HEADER_EXTENSIONS.values() for ext in exts}
    free = min(i for i in range(1, 15) if i not in used)
    video.append(RTCRtpHeaderExtensionParameters(id=free, uri=URI))


class PlayoutDelayMap(rtp.HeaderExtensionsMap):
    """aiortc's header-extension map plus the playout delay.

    Sending: with a range, every packet carries it once the extension was negotiated.
    Receiving: `received` holds the range the last packet carried (None until one did).
    """

    def __init__(self, min_ms: int | None = None, max_ms: int | None = None) -> None:
        super().__init__()
        self._payload = encode(min_ms, max_ms) if min_ms is not None and max_ms is not None else None
        self._id: int | None = None
        self.received: tuple[int, int] | None = None

    @property
    def negotiated(self) -> bool:
        return self._id is not None

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        for ext in parameters.headerExtensions:
            if ext.uri == URI:
                self._id = ext.id

    def get(self, extension_profile: int, extension_value: bytes) -> rtp.HeaderExtensions:
        values = super().get(extension_profile, extension_value)
        if self._id is not None:
            for x_id, x_value in rtp.unpack_header_extensions(extension_profile, extension_value):
                if x_id == self._id and len(x_value) == 3:
                    self.received = decode(x_value)
        return values

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = super().set(values)
        if self._id is None or self._payload is None:
            return profile, packed
        extensions = rtp.unpack_header_extensions(profile, packed) if packed else []
        return rtp.pack_header_extensions([*extensions, (self._id, self._payload)])


# aiortc keeps the sender's map in a name-mangled attribute; checked, so an aiortc that
# renames it costs the hint (with a warning), never the session.
_SENDER_MAP = "_RTCRtpSender__rtp_header_extensions_map"


def low_latency(sender: RTCRtpSender, min_ms: int = DEFAULT_MIN_MS, max_ms: int = DEFAULT_MAX_MS) -> bool:
    """Make `sender` mark its packets with a playout delay; call before the answer is applied.

    Returns False (and logs why) where this aiortc has no place for it.
    """
    if sender.kind != "video":
        return False
    current = getattr(sender, _SENDER_MAP, None)
    if not isinstance(current, rtp.HeaderExtensionsMap):
        log.warning("this aiortc keeps no header-extension map on its senders; playout delay not sent")
        return False
    setattr(sender, _SENDER_MAP, PlayoutDelayMap(min_ms, max_ms))
    return True

"""What `realtime stylize` shares between files (realtime/stylize/file.py) and stream URLs (url.py): the
formats, the user-facing error, the atomic output file, and the PyAV audio/video helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # av is imported where it is used, so image-only runs never load it
    import av
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.video.stream import VideoStream

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}
VIDEO_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm"}
FORMAT_NAMES = tuple(e.lstrip(".") for e in (*IMAGE_FORMATS, *VIDEO_FORMATS))  # what --format takes
STDIO = "-"
# The type written to stdout without --format: lossless for images; Matroska takes any audio codec as a copy.
STDOUT_DEFAULT = {"image": ".png", "video": ".mkv"}

# Audio codecs each container is known to take as a plain stream copy. Narrower than
# FFmpeg's own query (which accepts e.g. vorbis-in-mp4 that players reject); None = any.
COPY_AUDIO: dict[str, frozenset[str] | None] = {
    "mp4": frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac", "flac"}),
    "mov": frozenset({"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"}),
    "matroska": None,
    "webm": frozenset({"opus", "vorbis"}),
    "mpegts": frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus"}),  # stream outputs (realtime/stylize/url.py)
    "flv": frozenset({"aac", "mp3"}),
}


class StylizeError(Exception):
    """A user-facing failure; str() is the one line printed after `realtime: error:`."""


def disk_full_error(exc: BaseException, frames: int) -> StylizeError:
    why = getattr(exc, "strerror", None) or str(exc)
    return StylizeError(f"cannot write the output after {frames} frames ({why}): out of disk space or over a "
                        "file-size limit; the partial file was removed")


@contextmanager
def atomic_output(dst: Path) -> Iterator[Path]:
    """Yield a temp path beside dst (same suffix, so format guessing still works); rename on success."""
    # Not mkstemp: the writer creates the file itself, so it gets the usual umask permissions.
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.part{dst.suffix}")
    try:
        yield Path(tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_video_output(container: OutputContainer, fmt: str, rate: Fraction | None, time_base: Fraction,
                       width: int, height: int) -> VideoStream:
    """H.264 (VP9 for webm) stream whose codec time base is the input's, so pts pass through unrounded."""
    if fmt == "webm":
        stream = container.add_stream("libvpx-vp9", rate=rate)
        stream.options = {"crf": "32", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
    else:
        stream = container.add_stream("libx264", rate=rate)
        stream.options = {"crf": "19", "preset": "veryfast"}
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = time_base
    stream.time_base = time_base
    return stream


def open_audio_output(container: OutputContainer, fmt: str, src_audio: AudioStream) -> tuple[AudioStream, bool]:
    """Copy the audio stream if the container takes its codec; else re-encode (opus for webm, aac otherwise).

    Returns (stream, copy?)."""
    name = src_audio.codec_context.name
    allowed = COPY_AUDIO[fmt]
    if (allowed is None or name in allowed) and name in container.supported_codecs:
        return container.add_stream_from_template(src_audio), True
    if fmt == "webm":
        stream = container.add_stream("libopus", rate=48000)  # libopus only takes 48/24/16/12/8 kHz
    else:
        stream = container.add_stream("aac", rate=src_audio.codec_context.sample_rate or 48000)
    # A named layout: a source's "1 channels" (unspecified order, e.g. PCM in mkv) makes the AAC encoder refuse.
    stream.layout = "mono" if src_audio.codec_context.layout.nb_channels == 1 else "stereo"
    return stream, False


def display_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> RGB in display orientation (phone clips carry a rotation instead of rotated pixels).

    Rotating the pixels ourselves keeps the caption upright."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(getattr(frame, "rotation", 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def resize_rgb(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))

"""`realtime stylize`: one image or one video file through the same FramePipeline as the live service.

Video keeps its exact frame count and timing (every decoded frame is encoded once,
with its own pts) and its audio (packets copied when the output container takes
the codec, else re-encoded). The result is written to a hidden temp file next to
OUTPUT and renamed at the end, so a failed run never leaves a file that looks done.

SIGTERM / Ctrl-C stop after the current frame: the file is finished (the frames so far) and
renamed into place, exit 0. Out of disk space (or over a file-size limit) while writing: a one-line
error, and the partial file is removed; the run is not worth keeping half-written.

`-` as INPUT reads stdin (copied to a temporary file first, so every container works, mp4 with its
index at the end too); `-` as OUTPUT writes stdout once the result is complete (--format names the type).
Whether INPUT is an image or a video is read from its content, not its name.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engines.backends import Backend, BackendError
from engines.loader import load_backend
from realtime.expression.moods import MoodBook, MoodError
from realtime.expression.overlay import MAX_CAPTION_CHARS, render_caption
from realtime.expression.textlayout import clean_text
from realtime.live import stop
from realtime.live.control import ControlError, parse_control
from realtime.pipeline import FramePipeline, StyleState
from realtime.stylize.media import (
    FORMAT_NAMES,
    IMAGE_FORMATS,
    STDIO,
    STDOUT_DEFAULT,
    VIDEO_FORMATS,
    StylizeError,
    atomic_output,
    disk_full_error,
    display_rgb,
    open_audio_output,
    open_video_output,
    resize_rgb,
)
from realtime.stylize.progress import Progress

if TYPE_CHECKING:  # av is imported where it is used, so image-only runs never load it
    import av

# ---------------------------------------------------------------- arguments


def style_weights(args: argparse.Namespace, backend: Backend) -> dict[str, float]:
    """The run's blend: --style-image fits a style for this run only (realtime/style_cli.py), else
    --style / --weights."""
    if getattr(args, "style_image", None):
        from engines.style_fit import FitDiverged, FitTimeout, FitUnavailable
        from engines.style_library import StyleError
        from realtime.style_cli import fit_for_run

        try:
            return {fit_for_run(backend, args.style_image, None): 1.0}
        except (StyleError, FitUnavailable, FitDiverged, FitTimeout) as exc:
            raise StylizeError(str(exc)) from None
    return parse_weights(args.style, args.weights, backend.style_names)


def parse_weights(style: str | None, weights: list[str] | None, names: tuple[str, ...]) -> dict[str, float]:
    """--style NAME or --weights NAME=W ... -> {name: weight}; default: the first style."""
    known = ", ".join(names)
    if style is not None:
        if style not in names:
            raise StylizeError(f"unknown style {style!r}; known: {known}")
        return {style: 1.0}
    if not weights:
        return {names[0]: 1.0}
    out: dict[str, float] = {}
    for item in weights:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise StylizeError(f"bad --weights item {item!r}; expected NAME=WEIGHT, e.g. vangogh=0.6")
        if name not in names:
            raise StylizeError(f"unknown style {name!r}; known: {known}")
        try:
            w = float(value)
        except ValueError:
            raise StylizeError(f"bad weight in {item!r}: {value!r} is not a number") from None
        if not math.isfinite(w) or w < 0:
            raise StylizeError(f"bad weight in {item!r}: must be a finite number >= 0")
        out[name] = out.get(name, 0.0) + w
    if sum(out.values()) <= 0:
        raise StylizeError("at least one --weights value must be positive")
    return out


def sniff_kind(path: Path) -> str:
    """"image" or "video", from the file's first bytes (Pillow's identification), never from its name.

    An animated image (GIF, APNG, WebP) is a video: FFmpeg plays it frame by frame."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "video"
    return "image" if frames == 1 else "video"


def read_stdin(stack: ExitStack) -> Path:
    """Copy stdin into a temporary file (removed when `stack` closes): demuxers need to seek."""
    if sys.stdin is None or sys.stdin.isatty():
        raise StylizeError("INPUT is '-' but nothing is piped in; e.g. realtime stylize - out.png < photo.jpg")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stylize-"))) / "stdin"
    with open(tmp, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    if tmp.stat().st_size == 0:
        raise StylizeError("stdin was empty: nothing to stylize")
    return tmp


def check_look(args: argparse.Namespace) -> None:
    """The numbers and text of the look, checked before the model loads (file and stream runs alike)."""
    if args.strength is not None and not (math.isfinite(args.strength) and 0.0 <= args.strength <= 1.0):
        raise StylizeError(f"--strength must be between 0 and 1, got {args.strength}")
    if len(args.caption) > MAX_CAPTION_CHARS:
        raise StylizeError(f"--caption too long ({len(args.caption)} characters, limit {MAX_CAPTION_CHARS})")


def check_args(args: argparse.Namespace, src: Path | None = None) -> tuple[Path, Path | None, str, str]:
    """Validate paths and numbers before the (slow) model load.

    `src` is where INPUT's bytes are (a copy of stdin for '-'). Returns (input, output or None for stdout,
    kind, output extension)."""
    check_look(args)
    src = src or Path(args.input)
    if not src.exists():
        raise StylizeError(f"{src}: no such file")
    if not src.is_file():
        raise StylizeError(f"{src}: not a file")
    fmt = getattr(args, "format", None)
    dst: Path | None = None
    if args.output == STDIO:
        if sys.stdout is None or sys.stdout.isatty():
            raise StylizeError("OUTPUT is '-' but stdout is a terminal; redirect it, e.g. > out.png")
    else:
        dst = Path(args.output)
        if not dst.parent.is_dir():
            raise StylizeError(f"{dst.parent}: output folder does not exist")
        if dst.exists() and dst.resolve() == src.resolve():
            raise StylizeError("output would overwrite the input; pick another OUTPUT")
        if dst.exists() and not getattr(args, "overwrite", False):
            raise StylizeError(f"{dst} exists; pass --overwrite to replace it")
    kind = sniff_kind(src)
    shown = "stdin" if args.input == STDIO else str(src)
    out_ext = f".{fmt.lower()}" if fmt else (dst.suffix.lower() if dst is not None else STDOUT_DEFAULT[kind])
    if out_ext not in IMAGE_FORMATS and out_ext not in VIDEO_FORMATS:
        raise StylizeError(f"{args.output}: unsupported output type {out_ext or '(none)'!r}; use one of: "
                           f"{' '.join(FORMAT_NAMES)} (or --format)")
    if kind == "image" and out_ext not in IMAGE_FORMATS:
        raise StylizeError(f"{shown} is an image, so OUTPUT must be an image too ({' '.join(IMAGE_FORMATS)})")
    if kind == "video" and out_ext not in VIDEO_FORMATS:
        raise StylizeError(f"{shown} is read as a video, so OUTPUT must be a video ({' '.join(VIDEO_FORMATS)})")
    return src, dst, kind, out_ext


def build_pipeline(backend: Backend, args: argparse.Namespace) -> FramePipeline:
    """The look asked for on the command line, through the same validation as the live control messages:
    a mood first (blend, strength, caption style, emoji), then the explicit options over it."""
    try:
        book = MoodBook.load(getattr(args, "moods", None))
    except MoodError as exc:
        raise StylizeError(str(exc)) from None
    msg: dict = {}
    if getattr(args, "mood", None):
        msg["mood"] = args.mood
    if args.style is not None or args.weights or getattr(args, "style_image", None):
        msg["weights"] = style_weights(args, backend)
    names = backend.style_names  # after a --style-image fit, which adds its row to the bank
    pipe = FramePipeline(backend, StyleState(weights=parse_weights(None, None, names)), moods=book)
    if args.strength is not None:
        msg["strength"] = args.strength
    if args.caption:
        msg["caption"] = args.caption
    if getattr(args, "caption_kind", None):
        msg["caption_kind"] = args.caption_kind
    if getattr(args, "caption_color", None):
        msg["caption_color"] = args.caption_color
    if getattr(args, "emoji", None) is not None:
        msg["emoji"] = args.emoji
    try:
        update = parse_control(json.dumps(msg), names)
    except ControlError as exc:
        raise StylizeError(str(exc)) from None
    _, notes = pipe.apply_with_notes(update)
    for note in notes:
        print(f"realtime: note: {note}", file=sys.stderr)
    if args.caption:
        try:  # fail before decoding a whole video if the caption font is missing
            render_caption(args.caption, 640, 360)
        except RuntimeError as exc:
            raise StylizeError(str(exc)) from None
        for warning in clean_text(args.caption)[1]:  # e.g. letters no font has, drawn as a fallback glyph
            print(f"realtime: warning: {warning}", file=sys.stderr)
    return pipe


# ---------------------------------------------------------------- images


def stylize_image(pipe: FramePipeline, src: Path, tmp: Path, dst_ext: str, label: str | None = None) -> str:
    """`label` names the input in messages (default: its path)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(src) as im:
            im.load()  # decode now, so a truncated file fails here and not inside the network
            im = ImageOps.exif_transpose(im)  # phone photos: stylize what the viewer sees
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise StylizeError(f"{label or src}: cannot read image ({exc})") from None
    alpha = im.getchannel("A") if "A" in im.getbands() else None
    out = Image.fromarray(pipe.process(np.asarray(im.convert("RGB"))))
    fmt = IMAGE_FORMATS[dst_ext]
    if alpha is not None and fmt in ("PNG", "WEBP"):
        out.putalpha(alpha)  # keep transparency where the format can hold it
    out.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return f"{out.width}x{out.height} image"


# ---------------------------------------------------------------- video


class FrameClock:
    """Output pts for each decoded frame, in a time base fine enough for both the input's ticks and
    the nominal frame rate.

    A frame within one input tick of the constant-rate grid is put exactly on it: mkv/webm store
    milliseconds, so 1/15 s is already rounded there and copying that rounding would make the
    output report 15.007 fps. Anything further off (real variable frame rate) keeps its own time.
    Missing or non-increasing pts (broken files) are repaired, never dropped: one frame in, one out.
    """

    def __init__(self, in_tb: Fraction, rate: Fraction | None) -> None:
        self.in_tb = in_tb
        den = math.lcm(in_tb.denominator, rate.numerator) if rate else 0
        self.rate = rate if 0 < den <= 1 << 30 else None
        self.time_base = Fraction(1, den) if self.rate else in_tb
        self.step = max(1, round(1 / (self.rate * self.time_base))) if self.rate else 1
        self.last: int | None = None

    def pts(self, frame_pts: int | None) -> int:
        if frame_pts is None:
            out = 0 if self.last is None else self.last + self.step
        else:
            t = frame_pts * self.in_tb
            if self.rate:
                grid = Fraction(round(t * self.rate)) / self.rate
                if abs(t - grid) <= self.in_tb:
                    t = grid
            out = round(t / self.time_base)
        if self.last is not None and out <= self.last:
            out = self.last + 1
        self.last = out
        return out


def stylize_video(pipe: FramePipeline, src: Path, tmp: Path, dst_ext: str, *, label: str | None = None,
                  quiet: bool = False) -> str:
    import av

    shown = label or str(src)  # the input in messages
    fmt = VIDEO_FORMATS[dst_ext]
    try:
        inp = av.open(str(src))
    except av.FFmpegError as exc:
        raise StylizeError(f"{shown}: cannot read video ({exc.strerror or exc})") from None
    except UnicodeDecodeError:  # PyAV decodes container metadata as UTF-8; a damaged header can break that
        raise StylizeError(f"{shown}: cannot read video (corrupt metadata)") from None
    with inp:
        if not inp.streams.video:
            raise StylizeError(f"{shown}: no video stream")
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        rate = vin.average_rate or vin.guessed_rate
        clock = FrameClock(vin.time_base or Fraction(1, 90000), rate)

        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        out = av.open(str(tmp), "w", format=fmt, options=options)
        vout = aout = None
        copy_audio = False
        held: list[av.Packet] = []  # audio packets read before the first video frame fixed the output size
        frames_in = frames_out = 0
        note = ""
        listed = vin.frames  # read while open: PyAV 18 refuses a closed container's stream attributes
        bar = Progress(listed or None, label or src.name, quiet=quiet)

        def mux_audio(packet: av.Packet) -> None:
            if copy_audio:
                packet.stream = aout
                out.mux(packet)
            else:
                for af in packet.decode():
                    out.mux(aout.encode(af))

        failed = False
        stopped = False
        try:
            for packet in inp.demux(*(s for s in (vin, ain) if s is not None)):
                if stop.requested():
                    stopped = True
                    break
                if packet.stream is ain:
                    if packet.dts is None and copy_audio:
                        continue  # demuxer flush packet: nothing to copy
                    if vout is None:
                        held.append(packet)
                    else:
                        mux_audio(packet)
                    continue
                for frame in packet.decode():
                    rgb = display_rgb(frame)
                    h, w = rgb.shape[:2]
                    if vout is None:
                        # yuv420p needs even sizes: drop at most one row/column rather than rescale.
                        eh, ew = h - h % 2, w - w % 2
                        if eh < 2 or ew < 2:
                            raise StylizeError(f"{shown}: frames of {w}x{h} are too small to encode (at least 2x2)")
                        if (eh, ew) != (h, w):
                            note = f" (odd size {w}x{h} cropped to {ew}x{eh} for yuv420p)"
                            bar.note(f"realtime: note: {shown} is {w}x{h}; yuv420p needs even "
                                     f"sizes, writing {ew}x{eh}")
                        vout = open_video_output(out, fmt, rate, clock.time_base, ew, eh)
                        if ain is not None:
                            aout, copy_audio = open_audio_output(out, fmt, ain)
                            for p in held:
                                if not (copy_audio and p.dts is None):
                                    mux_audio(p)
                            held.clear()
                    if not (0 <= h - vout.height <= 1 and 0 <= w - vout.width <= 1):
                        rgb = resize_rgb(rgb, vout.width, vout.height)  # the size changed mid-file: keep the output's
                    styled = pipe.process(np.ascontiguousarray(rgb[: vout.height, : vout.width]))
                    vf = av.VideoFrame.from_ndarray(styled, format="rgb24").reformat(format="yuv420p")
                    vf.pts, vf.time_base = clock.pts(frame.pts), clock.time_base
                    packets = vout.encode(vf)
                    frames_out += len(packets)
                    out.mux(packets)
                    frames_in += 1
                    bar.update(1)
            if vout is None:
                raise StylizeError(f"{shown}: no decodable video frames")
            packets = vout.encode(None)
            frames_out += len(packets)
            out.mux(packets)
            if aout is not None and not copy_audio:
                out.mux(aout.encode(None))
        except av.FFmpegError as exc:
            failed = True
            if stop.is_disk_full(exc):
                raise disk_full_error(exc, frames_in) from None
            raise StylizeError(f"{shown}: video error after {frames_in} frames ({exc.strerror or exc})") from None
        except BaseException:
            failed = True
            raise
        finally:
            bar.close()
            try:
                out.close()  # writes the trailer (and moves the index to the front for mp4): can fail too
            except (av.FFmpegError, OSError) as exc:
                if not failed:
                    if stop.is_disk_full(exc):
                        raise disk_full_error(exc, frames_in) from None
                    raise StylizeError(f"cannot finish the output ({getattr(exc, 'strerror', None) or exc})") \
                        from None
    if frames_out != frames_in:  # the encoder must emit one packet per frame; anything else is a bug
        raise StylizeError(f"encoded {frames_out} frames for {frames_in} input frames")
    if stopped:
        note += f" (stopped by {stop.reason() or 'a signal'}: the frames so far)"
    elif listed and frames_in < listed:
        # Not an error: edit lists can legitimately hide frames the index counts. But say so.
        note += f" (the file lists {listed} frames but only {frames_in} decoded: truncated?)"
    audio = ""
    if ain is not None:
        audio = ", audio copied" if copy_audio else f", audio re-encoded to {aout.codec_context.name}"
    fps = f"{float(rate):g} fps" if rate else "unknown frame rate"
    return f"{frames_in} frames at {fps}{audio}{note}"


# ---------------------------------------------------------------- entry point


def run_file(args: argparse.Namespace) -> int:
    """`realtime stylize` with a file (or stdin/stdout) on both sides; 0, or 2 after one error line."""
    quiet = getattr(args, "quiet", False)
    label = "stdin" if args.input == STDIO else None
    try:
        with ExitStack() as stack:
            check_look(args)  # before reading a whole stdin
            src, dst, kind, ext = check_args(args, read_stdin(stack) if args.input == STDIO else None)
            backend: Backend = load_backend(args.engine, args.backend, args.threads)
            pipe = build_pipeline(backend, args)
            stack.callback(pipe.close)
            if dst is None:  # stdout: written once complete, so a failed run writes nothing
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stylize-"))) / f"out{ext}"
            else:
                tmp = stack.enter_context(atomic_output(dst))
            if kind == "image":
                summary = stylize_image(pipe, src, tmp, ext, label)
            else:
                summary = stylize_video(pipe, src, tmp, ext, label=label, quiet=quiet)
            if dst is None:
                with open(tmp, "rb") as f:
                    shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
    except (StylizeError, BackendError) as exc:
        print(f"realtime: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout went away (e.g. `| head`): nothing more to say
        return 1
    except OSError as exc:  # disk full, permissions: still one line, still no partial output
        extra = "; nothing was written" if stop.is_disk_full(exc) else ""
        print(f"realtime: error: {exc.filename or args.output}: {exc.strerror or exc}{extra}", file=sys.stderr)
        return 2
    if not quiet:
        print(f"wrote {'stdout' if dst is None else dst}: {summary}", file=sys.stderr)
    return 0

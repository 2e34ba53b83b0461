"""`realtime stylize` with stream URLs: live inputs and outputs through PyAV (FFmpeg).

Inputs: rtsp://, rtmp://, srt://, udp://, http(s):// (and files). Outputs: a file, rtmp:// (FLV),
srt:// or udp:// (MPEG-TS).

    reader thread   demux -> decode video -> newest frame only (older ones are counted as dropped)
                           -> audio packets -> queue, copied to the output unchanged
                    a network input that fails or ends is reopened with back-off (0.5 s doubling to 10 s)
    main thread     newest frame -> FramePipeline -> H.264 (zerolatency) -> mux, with the audio packets

Timing: every packet keeps its input timestamp, shifted by one offset per connection, so audio
and video stay in sync and a file keeps its duration; a reconnect starts its offset at "now",
so output time never goes back. Inputs with a known duration (files, a VOD over http) are read
in real time, as a live source would arrive; live inputs are taken as they come. A status line
shows fps, lag (how far the output trails the input's clock) and drops.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engines.backends import Backend, BackendError
from engines.loader import load_backend
from realtime.live import stop
from realtime.pipeline import FramePipeline
from realtime.stylize.file import build_pipeline, check_look
from realtime.stylize.media import (
    COPY_AUDIO,
    STDIO,
    VIDEO_FORMATS,
    StylizeError,
    atomic_output,
    disk_full_error,
    display_rgb,
    open_audio_output,
)

if TYPE_CHECKING:
    import av

INPUT_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "http", "https")
OUTPUT_FORMATS = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts", "udp": "mpegts"}   # scheme -> muxer
FILE_FORMATS = {**VIDEO_FORMATS, ".ts": "mpegts", ".flv": "flv"}
VIDEO_CLOCK = Fraction(1, 90000)
BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 10.0
OPEN_TIMEOUT_S = 15.0       # outputs (an rtmp:// handshake)
OPEN_GRACE_S = 2.0          # inputs: --timeout plus this to connect and probe
AUDIO_QUEUE = 2000          # packets (about 40 s of AAC); past that the oldest are dropped
STATUS_EVERY_S = 0.5


def scheme(target: str) -> str | None:
    """The URL scheme of a stream target, or None for a plain path."""
    head, sep, _ = target.partition("://")
    return head.lower() if sep and head.isalpha() else None


def is_stream(target: str) -> bool:
    """True when INPUT or OUTPUT of `realtime stylize` is a URL rather than a file."""
    return scheme(target) is not None


def _options(items: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StylizeError(f"bad --{what}-option {item!r}; expected KEY=VALUE, e.g. listen=1")
        out[key] = value
    return out


# ---------------------------------------------------------------- the input side


@dataclass
class Clocked:
    """A decoded video frame (or an audio packet/frame) and where it sits on the output clock.

    t: output time in seconds (input time + the connection's offset); for audio items, t is the offset.
    due: when it would have been handed over with the least delay seen on its connection, for the lag."""

    item: Any
    t: float
    due: float = 0.0


@dataclass
class InputState:
    """What the reader thread shares with the main thread (under `wake`)."""

    wake: threading.Condition = field(default_factory=threading.Condition)
    base: float | None = None            # time.monotonic() of output time 0 (the first packet ever read)
    first: Clocked | None = None         # a connection's first frame: kept until taken, so video starts with it
    latest: Clocked | None = None        # newest decoded video frame not yet taken
    audio: queue.Queue = field(default_factory=lambda: queue.Queue(AUDIO_QUEUE))
    audio_template: Any = None           # the first connection's audio stream (the output copies it)
    audio_sig: tuple | None = None       # its (codec, rate, channels): later connections must match
    decode_audio: bool = False           # set by the writer when it re-encodes: the reader then sends frames
    rate: Fraction | None = None
    frames_in: int = 0
    dropped: int = 0                     # decoded, never stylized: a newer frame replaced it
    audio_dropped: int = 0
    reconnects: int = 0
    finished: bool = False               # no more input (end of file, or reconnects used up)
    error: str | None = None             # why, when it is a failure
    note: str = ""                       # what the reader is doing now (status line)

    def clock(self) -> float:
        """Now, on the output clock."""
        return time.monotonic() - self.base if self.base is not None else 0.0

    def take(self) -> Clocked | None:
        """The frame to stylize next (call with `wake` held)."""
        item: Clocked | None
        if self.first is not None:
            item, self.first = self.first, None
        else:
            item, self.latest = self.latest, None
        return item


class Reader(threading.Thread):
    """Opens, demuxes and decodes the input; reconnects a network input that drops."""

    def __init__(self, url: str, state: InputState, reconnects: int, read_timeout: float,
                 options: dict[str, str], on_open: Callable[[int, int], None] | None = None) -> None:
        super().__init__(daemon=True, name="stream-reader")
        self.on_open = on_open  # called with the first connection's video size, before it is read
        self.url = url
        self.state = state
        self.max_reconnects = reconnects  # -1: forever
        self.read_timeout = read_timeout
        self.options = options
        self.stop_event = threading.Event()
        self.network = is_stream(url)

    def _open(self) -> av.container.InputContainer:
        import av

        opts = dict(self.options)
        if self.network:
            # FFmpeg probes 5 s of a live stream before it returns; 1 s finds H.264/AAC in MPEG-TS and FLV.
            opts.setdefault("analyzeduration", "1000000")
        if scheme(self.url) in ("rtsp", "rtsps"):
            opts.setdefault("rtsp_transport", "tcp")  # UDP RTP loses packets as soon as the machine is busy
        # Opening waits for the first data too (a live input that is down): a little longer than a read may.
        return av.open(self.url, options=opts, timeout=(self.read_timeout + OPEN_GRACE_S, self.read_timeout))

    def run(self) -> None:
        import av

        backoff, failures = BACKOFF_START_S, 0
        while not self.stop_event.is_set():
            why = ""
            try:
                self.state.note = "connecting" if self.network else ""
                with self._open() as container:
                    got = self._pump(container)
                    if got:
                        backoff, failures = BACKOFF_START_S, 0
                    if self.state.finished:
                        return
                    why = "input ended"
            except (av.FFmpegError, OSError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                if not self.network:
                    self._finish(f"{self.url}: cannot read ({why})")
                    return
            except StylizeError as exc:
                self._finish(str(exc))
                return
            if self.stop_event.is_set():
                break
            failures += 1
            if 0 <= self.max_reconnects < failures:
                tried = f" after {self.max_reconnects} reconnect(s)" if self.max_reconnects else ""
                self._finish(None if self.state.frames_in else f"{self.url}: {why or 'no input'}{tried}")
                return
            self.state.reconnects += 1
            self.state.note = f"{why}; reconnecting in {backoff:g} s"
            self.stop_event.wait(backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)
        self._finish(None)

    def _finish(self, error: str | None) -> None:
        with self.state.wake:
            self.state.finished = True
            self.state.error = error
            self.state.wake.notify_all()

    def _pump(self, container: av.container.InputContainer) -> bool:
        """Read one connection until it ends. Returns whether it gave any frame."""
        import av

        st = self.state
        if not container.streams.video:
            raise StylizeError(f"{self.url}: no video stream")
        vin = container.streams.video[0]
        vin.thread_type = "SLICE"  # frame threads would hold back a frame per thread: latency
        ain = container.streams.audio[0] if container.streams.audio else None
        if ain is not None:
            cc = ain.codec_context
            sig = (cc.name, cc.sample_rate, cc.layout.nb_channels)
            if st.audio_sig is None:
                st.audio_template, st.audio_sig = ain, sig
            elif sig != st.audio_sig:
                ain = None  # the output's audio stream is fixed: a different codec after a reconnect is left out
        if st.rate is None:
            st.rate = vin.average_rate or vin.guessed_rate
        if self.on_open is not None and vin.codec_context.width and vin.codec_context.height:
            # Before the first packet is read: what arrives meanwhile waits in the socket, not in `latest`.
            warm, self.on_open = self.on_open, None
            warm(vin.codec_context.width, vin.codec_context.height)
        # Files and VOD (a known duration) are read in real time, like a live source; live input as it comes.
        paced = not self.network or bool(container.duration)
        conn = _Connection(st)
        st.note = ""
        try:
            for packet in container.demux(*(s for s in (vin, ain) if s is not None)):
                if self.stop_event.is_set():
                    return conn.frames > 0
                if packet.dts is None and packet.pts is None:  # a flush packet: the input ended
                    if packet.stream is vin:
                        conn.video(packet.decode(), 0.0)  # end of input: what the decoder still holds
                    continue
                stamp = packet.dts if packet.dts is not None else packet.pts
                if stamp is None or packet.time_base is None:
                    continue
                ptime = float(stamp * packet.time_base)
                conn.seen(ptime)
                if paced:
                    ahead = ptime + conn.offset - st.clock()
                    if ahead > 0 and self.stop_event.wait(ahead):
                        return conn.frames > 0
                if packet.stream is ain:
                    # Packets are copied as they are; decoded here only when the output re-encodes (their
                    # decoder belongs to this connection's container, which the main thread must not touch).
                    for item in (packet.decode() if st.decode_audio else [packet]):
                        conn.audio(item)
                    continue
                conn.video(packet.decode(), ptime)
        except av.FFmpegError:
            try:  # a live input dropped: the frames the decoder holds are still good
                conn.video(vin.decode(None), 0.0)
            except av.FFmpegError:
                pass
            raise
        if paced:
            self._finish(None)  # a file or VOD ends; nothing to reconnect to
        return conn.frames > 0


class _Connection:
    """One connection's clock: input time + offset = output time, and the least delay seen (for the lag)."""

    def __init__(self, st: InputState) -> None:
        self.st = st
        self.offset = 0.0
        self.least = 0.0
        self.started = False
        self.frames = 0

    def seen(self, ptime: float) -> None:
        st = self.st
        if st.base is None:
            st.base = time.monotonic()  # the first packet ever is output time 0
        now = st.clock()
        if not self.started:
            self.started = True
            self.offset = self.least = now - ptime  # a reconnect starts at "now": output time never goes back
        self.least = min(self.least, now - ptime)

    def audio(self, item: Any) -> None:
        st = self.st
        try:
            st.audio.put_nowait(Clocked(item, self.offset))
        except queue.Full:
            st.audio.get_nowait()
            st.audio.put_nowait(Clocked(item, self.offset))
            st.audio_dropped += 1

    def video(self, frames: Any, ptime: float) -> None:
        st = self.st
        for frame in frames:
            ft = float(frame.pts * frame.time_base) if frame.pts is not None else ptime
            item = Clocked(display_rgb(frame), ft + self.offset, ft + self.least)
            with st.wake:
                if self.frames == 0:
                    st.first = item
                else:
                    if st.latest is not None:
                        st.dropped += 1
                    st.latest = item
                st.frames_in += 1
                self.frames += 1
                st.wake.notify_all()


# ---------------------------------------------------------------- the output side


class Writer:
    """H.264 video from stylized frames, and the input's audio packets, muxed into the output."""

    def __init__(self, target: str, fmt: str, options: dict[str, str]) -> None:
        import av

        self.target = target
        self.fmt = fmt
        if fmt in ("mp4", "mov"):
            options = {"movflags": "+faststart", **options}
        try:
            self.out = av.open(target, "w", format=fmt, options=options, timeout=OPEN_TIMEOUT_S)
        except av.FFmpegError as exc:
            raise StylizeError(f"{target}: cannot open output ({exc.strerror or exc})") from None
        self.vout: Any = None
        self.aout: Any = None
        self.copy_audio = False
        self.last_video_pts: int | None = None
        self.last_audio_dts: float | None = None
        self.frames_out = 0
        self.audio_packets = 0

    def open_streams(self, width: int, height: int, rate: Fraction | None, audio_template: Any) -> bool:
        """Add the video stream (and the audio one); returns whether audio is copied."""
        rate = rate if rate and 0 < rate <= 240 else Fraction(30)
        # Live streaming wants low delay (no B-frames: zerolatency) and a keyframe every 2 s for joiners.
        v = self.out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "21",
                     "g": str(max(1, round(2 * float(rate))))}
        v.codec_context.time_base = VIDEO_CLOCK
        v.time_base = VIDEO_CLOCK
        self.vout = v
        if audio_template is not None:
            allowed = COPY_AUDIO.get(self.fmt)
            if allowed is not None and audio_template.codec_context.name in allowed:
                # FFmpeg's codec query says "no" to most codecs for MPEG-TS, which takes them fine: trust the list.
                self.aout, self.copy_audio = self.out.add_stream_from_template(audio_template), True
            else:
                self.aout, self.copy_audio = open_audio_output(self.out, self.fmt, audio_template)
        return self.copy_audio

    def video(self, rgb: np.ndarray, t: float) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        pts = max(0, round(t / VIDEO_CLOCK))
        if self.last_video_pts is not None and pts <= self.last_video_pts:
            pts = self.last_video_pts + 1  # never back, never equal
        self.last_video_pts = pts
        vf.pts, vf.time_base = pts, VIDEO_CLOCK
        self.out.mux(self.vout.encode(vf))
        self.frames_out += 1

    def audio(self, item: av.Packet | av.AudioFrame, offset: float) -> None:
        """Copy one input audio packet (or re-encode a decoded frame), moved onto the output clock."""
        import av

        if self.aout is None:
            return
        if isinstance(item, av.Packet):
            if not self.copy_audio:  # held from before the output was opened: decode it now
                for af in item.decode():
                    if isinstance(af, av.AudioFrame):
                        self.audio(af, offset)
                return
            stamp = item.dts if item.dts is not None else item.pts
        else:
            stamp = item.pts
        tb = item.time_base
        if stamp is None or tb is None:
            return
        shift = round(offset / tb)
        t = float((stamp + shift) * tb)
        if t < 0 or (self.last_audio_dts is not None and t <= self.last_audio_dts):
            return  # before the start, or overlapping what is written already (after a reconnect)
        self.last_audio_dts = t
        if isinstance(item, av.Packet):
            if item.pts is not None:
                item.pts += shift
            item.dts = stamp + shift
            item.stream = self.aout
            self.out.mux(item)
        else:
            item.pts = stamp + shift
            self.out.mux(self.aout.encode(item))
        self.audio_packets += 1

    def close(self) -> None:
        try:
            if self.vout is not None:
                self.out.mux(self.vout.encode(None))
            if self.aout is not None and not self.copy_audio:
                self.out.mux(self.aout.encode(None))
        finally:
            self.out.close()


# ---------------------------------------------------------------- the loop


class Status:
    """One live line on stderr (a line every few seconds when stderr is not a terminal)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = time.monotonic()  # the first line after a little while, not before anything happened
        self.times: list[float] = []
        self.lags: list[float] = []
        self.width = 0

    def frame(self, lag_s: float) -> None:
        now = time.monotonic()
        self.times.append(now)
        self.lags.append(lag_s)
        while self.times and self.times[0] < now - 2.0:  # the last 2 s
            del self.times[0], self.lags[0]

    def show(self, st: InputState, writer: Writer | None, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or not force and now - self.last < (STATUS_EVERY_S if self.tty else 5.0):
            return
        self.last = now
        recent = [t for t in self.times if t >= now - 2.0]
        span = now - recent[0] if recent else 0.0
        fps = len(recent) / max(span, 1.0) if recent else 0.0
        lag = 1e3 * float(np.median(self.lags)) if self.lags else 0.0
        out = writer.frames_out if writer else 0
        line = (f"live: {fps:5.1f} fps  lag {lag:4.0f} ms  dropped {st.dropped}  in {st.frames_in}  out {out}"
                f"  reconnects {st.reconnects}" + (f"  [{st.note}]" if st.note else ""))
        if self.tty:
            pad = max(0, self.width - len(line))
            self.width = len(line)
            print("\r" + line + " " * pad, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def _check(args: argparse.Namespace) -> tuple[str, str | Path, str]:
    """Validate before the model loads. Returns (input, output target, output format)."""
    check_look(args)
    src, dst = args.input, args.output
    if src == STDIO:
        raise StylizeError("INPUT '-' (stdin) is for files; with a stream OUTPUT, name the input file or URL")
    s_in = scheme(src)
    if s_in is not None and s_in not in INPUT_SCHEMES:
        raise StylizeError(f"{src}: unsupported input protocol {s_in!r}; use one of: {', '.join(INPUT_SCHEMES)}")
    if s_in is None and not Path(src).is_file():
        raise StylizeError(f"{src}: no such file")
    if dst == STDIO:  # a live MPEG-TS stream on stdout, e.g. `| ffplay -`
        if sys.stdout is None or sys.stdout.isatty():
            raise StylizeError("OUTPUT is '-' but stdout is a terminal; pipe it, e.g. | ffplay -")
        return src, "pipe:1", "mpegts"
    s_out = scheme(dst)
    if s_out is not None:
        if s_out not in OUTPUT_FORMATS:
            raise StylizeError(f"{dst}: unsupported output protocol {s_out!r}; use a file, "
                               f"{', '.join(p + '://' for p in OUTPUT_FORMATS)}")
        return src, dst, OUTPUT_FORMATS[s_out]
    path = Path(dst)
    if not path.parent.is_dir():
        raise StylizeError(f"{path.parent}: output folder does not exist")
    if path.exists() and not getattr(args, "overwrite", False):
        raise StylizeError(f"{path} exists; pass --overwrite to replace it")
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise StylizeError(f"{dst}: a stream is written as video: use one of {' '.join(FILE_FORMATS)}")
    if fmt == "webm":
        raise StylizeError(f"{dst}: webm cannot hold the H.264 a stream is written as; use .mkv or .mp4")
    return src, path, fmt


def _protocol_hint(exc_text: str, url: str) -> str:
    if "Protocol not found" in exc_text and scheme(url) == "srt":
        return " (this PyAV/FFmpeg build has no SRT support: libsrt is missing; use udp:// or rtmp://)"
    return ""


def stylize_stream(pipe: FramePipeline, src: str, target: str, fmt: str, *, duration: float | None = None,
                   reconnects: int = -1, read_timeout: float = 5.0, input_options: dict[str, str] | None = None,
                   output_options: dict[str, str] | None = None, status: Status | None = None) -> str:
    """Run until the input ends (or `duration` seconds, or Ctrl-C); returns a one-line summary."""
    import av

    t0 = time.monotonic()
    state = InputState()
    # The output first: a wrong rtmp:// address fails at once, before the input is opened.
    writer = Writer(target, fmt, output_options or {})
    # The output size is the first frame's, made even (yuv420p); later connections are fitted to it.
    reader = Reader(src, state, reconnects, read_timeout, input_options or {},
                    on_open=lambda w, h: pipe.warm(w - w % 2, h - h % 2))
    reader.start()
    status = status or Status()
    stopped = ""
    failed = False

    def over() -> bool:
        return stop.requested() or (duration is not None and time.monotonic() - t0 >= duration)

    try:
        while True:
            with state.wake:
                while state.first is None and state.latest is None and not state.finished and not over():
                    state.wake.wait(STATUS_EVERY_S)
                    status.show(state, writer)
                item = state.take()
                finished = state.finished
            if over():
                stopped = (f" (stopped by {stop.reason() or 'a signal'})" if stop.requested()
                           else f" (stopped after {duration:g} s)")
                break
            if item is None:
                if finished:
                    break
                continue
            rgb: np.ndarray = item.item
            if writer.vout is None:
                h, w = rgb.shape[:2]
                copy = writer.open_streams(w - w % 2, h - h % 2, state.rate, state.audio_template)  # yuv420p: even
                state.decode_audio = state.audio_template is not None and not copy
            rgb = _fit(rgb, writer.vout.width, writer.vout.height)
            styled = pipe.process(np.ascontiguousarray(rgb))
            try:
                writer.video(styled, item.t)
            except av.FFmpegError as exc:  # the output is opened (connected) with the first packet
                failed = True
                if stop.is_disk_full(exc):
                    raise disk_full_error(exc, writer.frames_out) from None
                raise StylizeError(f"{target}: cannot write ({exc.strerror or exc})") from None
            status.frame(state.clock() - item.due)
            _drain_audio(state, writer)
            status.show(state, writer)
    except KeyboardInterrupt:
        stopped = " (stopped by Ctrl-C)"
    except BaseException:
        failed = True
        raise
    finally:
        reader.stop_event.set()
        with state.wake:
            state.wake.notify_all()
        try:
            reader.join(2.0)
            try:
                if writer.vout is not None and not failed:
                    _drain_audio(state, writer)
                writer.close()
            except (av.FFmpegError, OSError) as exc:
                if not failed:  # finishing the file failed (e.g. the disk filled up at the trailer)
                    if stop.is_disk_full(exc):
                        raise disk_full_error(exc, writer.frames_out) from None
                    raise StylizeError(f"{target}: cannot finish the output ({exc})") from None
        finally:
            if writer.frames_out:
                status.show(state, writer, force=True)
            status.done()
    if not writer.frames_out:
        why = state.error or f"{src}: no video arrived"
        raise StylizeError(why + _protocol_hint(why, src))
    audio = ""
    if writer.aout is not None:
        audio = ", audio copied" if writer.copy_audio else f", audio re-encoded to {writer.aout.codec_context.name}"
    return (f"{writer.frames_out} frames ({state.dropped} dropped of {state.frames_in}), "
            f"{state.reconnects} reconnect(s){audio}{stopped}")


def _drain_audio(state: InputState, writer: Writer) -> None:
    while True:
        try:
            c = state.audio.get_nowait()
        except queue.Empty:
            return
        writer.audio(c.item, c.t)


def _fit(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    """The output size is fixed: drop an odd row/column, or rescale what a reconnect brought in another size."""
    ih, iw = rgb.shape[:2]
    if (ih, iw) == (h, w):
        return rgb
    if 0 <= ih - h <= 1 and 0 <= iw - w <= 1:
        return rgb[:h, :w]
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


def run_stream(args: argparse.Namespace) -> int:
    """`realtime stylize` when INPUT or OUTPUT is a URL."""
    import av

    try:
        src, dst, fmt = _check(args)
        inputs = _options(getattr(args, "input_option", None), "input")
        outputs = _options(getattr(args, "output_option", None), "output")
        if fmt == "mpegts" and scheme(str(dst)) == "udp" and "pkt_size" not in str(dst):
            outputs.setdefault("pkt_size", "1316")  # 7 TS packets per datagram, as receivers expect
        backend: Backend = load_backend(args.engine, args.backend, args.threads)
        pipe = build_pipeline(backend, args)
        kwargs: dict[str, Any] = {"duration": args.duration, "reconnects": args.reconnect,
                                  "read_timeout": args.timeout, "input_options": inputs, "output_options": outputs,
                                  "status": Status(quiet=getattr(args, "quiet", False))}
        try:
            if isinstance(dst, Path):
                with atomic_output(dst) as tmp:
                    summary = stylize_stream(pipe, src, str(tmp), fmt, **kwargs)
            else:
                summary = stylize_stream(pipe, src, dst, fmt, **kwargs)
        finally:
            pipe.close()
    except (StylizeError, BackendError) as exc:
        print(f"realtime: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except av.FFmpegError as exc:
        text = str(exc.strerror or exc)
        print(f"realtime: error: {text}{_protocol_hint(text, args.input)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"realtime: error: {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not getattr(args, "quiet", False):
        print(f"wrote {'stdout' if dst == 'pipe:1' else dst}: {summary}", file=sys.stderr)
    return 0

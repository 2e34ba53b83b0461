"""`realtime stylize` with stream URLs, on loopback UDP (MPEG-TS): a live stream in, a file with audio out.

Media is generated with PyAV in threads; nothing leaves 127.0.0.1 (receivers bind with localaddr=127.0.0.1).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from realtime.cli import main
from realtime.stylize.url import is_stream, scheme
from tests.test_stylize import FPS, make_clip

pytestmark = pytest.mark.integration

W, H = 320, 180
RECV_OPTS = "localaddr=127.0.0.1&overrun_nonfatal=1&fifo_size=100000"


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_bound(port: int, alive: Callable[[], bool], timeout: float = 120.0) -> bool:
    """Wait until someone listens on 127.0.0.1:port (our own bind then fails): True. False as soon as the
    listener's thread has ended without that (it failed to open; its error says why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return True
        if not alive():
            return False
        time.sleep(0.05)
    raise AssertionError(f"nothing listened on udp port {port} within {timeout:.0f} s")


def start_receiver(tries: int = 3) -> Receiver:
    """A Receiver listening on a fresh port. A port that was free when picked can be taken by another
    process before the receiver binds it (aiortc peers bind many UDP ports): then try another."""
    for _ in range(tries):
        rx = Receiver(udp_port())
        rx.start()
        if wait_bound(rx.port, alive=rx.is_alive):
            return rx
    raise AssertionError(f"the receiver could not listen ({tries} ports tried): {rx.error!r}")


def scene() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([128 + 90 * np.sin(x / 23), 128 + 90 * np.cos(y / 17), 128 + 60 * np.sin((x + y) / 31)], -1)
    img[40:110, 50:140] = (230, 40, 40)
    img[90:160, 190:280] = (30, 60, 220)
    return img.clip(0, 255).astype(np.uint8)


def send_ts(port: int, frames: int, fps: int = FPS) -> None:
    """A live MPEG-TS over UDP: H.264 + AAC, paced in real time, like a camera or an encoder would send it."""
    url = f"udp://127.0.0.1:{port}?pkt_size=1316"
    img = scene()
    with av.open(url, "w", format="mpegts") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        v.options = {"tune": "zerolatency", "preset": "ultrafast", "g": "10"}
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        per = 48000 // fps
        t0 = time.monotonic()
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            f.time_base = Fraction(1, fps)
            c.mux(v.encode(f))
            tone = (0.3 * np.sin(2 * np.pi * 440 * (i * per + np.arange(per)) / 48000)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(tone[None], format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, i * per
            c.mux(a.encode(af))
            delay = t0 + (i + 1) / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        c.mux(v.encode(None))
        c.mux(a.encode(None))


class Receiver(threading.Thread):
    """Reads an MPEG-TS from UDP until it goes quiet: video frame times, audio samples, decoded pictures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.url = f"udp://127.0.0.1:{port}?{RECV_OPTS}"
        self.video_t: list[float] = []
        self.audio_t: list[float] = []
        self.samples = 0
        self.rate = 0
        self.pictures: list[np.ndarray] = []
        self.codecs: tuple[str, str | None] = ("", None)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with av.open(self.url, timeout=(120, 4), options={"analyzeduration": "500000", "probesize": "200000"}) as c:
                a = c.streams.audio[0] if c.streams.audio else None
                self.codecs = (c.streams.video[0].codec_context.name, a.codec_context.name if a else None)
                try:
                    for packet in c.demux():
                        for f in packet.decode():
                            if isinstance(f, av.VideoFrame):
                                self.video_t.append(float(f.pts * f.time_base))
                                if len(self.pictures) < 200:
                                    self.pictures.append(f.to_ndarray(format="rgb24"))
                            else:
                                self.audio_t.append(float(f.pts * f.time_base))
                                self.samples += f.samples
                                self.rate = f.sample_rate
                except av.FFmpegError:
                    pass  # the read timeout: the stream went quiet
        except Exception as exc:  # noqa: BLE001  (any failure in the thread is reported by the test)
            self.error = exc


def _stylized(pictures: list[np.ndarray], src: np.ndarray, style: str) -> tuple[float, float]:
    from engines.loader import load_backend

    backend = load_backend()
    expected = backend.stylize(src, backend.contract.weights_vector({style: 1.0})).astype(np.float64)
    got = pictures[len(pictures) // 2].astype(np.float64)
    return float(np.abs(got - expected).mean()), float(np.abs(got - src).mean())


@pytest.mark.unit
def test_stream_targets_are_told_from_files() -> None:
    assert is_stream("udp://127.0.0.1:5000") and is_stream("rtmp://host/live/key") and is_stream("srt://h:1")
    assert not is_stream("clip.mp4") and not is_stream("/tmp/a b.mkv") and not is_stream("C:\\x.mp4")
    assert scheme("RTSP://cam/1") == "rtsp" and scheme("out.ts") is None


def test_udp_stream_in_stylized_frames_and_audio_out(tmp_path: Path) -> None:
    port = udp_port()
    out = tmp_path / "live.mkv"
    frames = 45  # 3 s at 15 fps
    rc: list[int] = []
    runner = threading.Thread(target=lambda: rc.append(main([
        "stylize", f"udp://127.0.0.1:{port}?{RECV_OPTS}", str(out), "--style", "hokusai",
        "--reconnect", "0", "--timeout", "2"])), daemon=True)
    runner.start()
    assert wait_bound(port, alive=runner.is_alive), f"stylize ended before listening: {rc}"
    send_ts(port, frames)
    runner.join(120)
    assert rc == [0], "realtime stylize did not finish cleanly after the stream ended"
    with av.open(str(out)) as c:
        assert c.streams.audio, "the stream's audio was lost"
        assert c.streams.audio[0].codec_context.name == "aac", "audio should be copied, not re-encoded"
        vt = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        pictures = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        samples = sum(f.samples for f in c.decode(audio=0))
    video_s = vt[-1] - vt[0] + 1 / FPS
    audio_s = samples / 48000
    print(f"\n[stream] udp in: {len(vt)} of {frames} frames stylized, video {video_s:.3f} s, audio {audio_s:.3f} s")
    assert len(vt) >= frames // 3
    assert abs(video_s - frames / FPS) <= 1 / FPS + 1e-6
    assert abs(audio_s - frames / FPS) <= 1 / FPS + 0.03  # AAC frames are 21 ms; the encoder's priming
    err_model, err_input = _stylized(pictures, scene(), "hokusai")
    print(f"[stream] |frame - model output| {err_model:.1f}, |frame - input| {err_input:.1f}")
    assert err_model < 0.6 * err_input, "the output frames are not the model's stylization"


def test_udp_input_that_drops_is_reopened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = udp_port()
    out = tmp_path / "again.mkv"
    rc: list[int] = []
    runner = threading.Thread(target=lambda: rc.append(main([
        "stylize", f"udp://127.0.0.1:{port}?{RECV_OPTS}", str(out), "--timeout", "1", "--reconnect", "2"])),
        daemon=True)
    runner.start()
    # Each burst is 2 s: FFmpeg probes the first second (those frames come out at once, and all but the
    # newest are dropped, as a live input's backlog should be); the second second is read live.
    assert wait_bound(port, alive=runner.is_alive), f"stylize ended before listening: {rc}"
    send_ts(port, 2 * FPS)
    silent_from = time.monotonic()
    time.sleep(2.5)  # the sender goes away; the reader times out after 1 s and reopens with back-off
    assert wait_bound(port, alive=runner.is_alive), f"stylize ended before listening again: {rc}"
    silence = time.monotonic() - silent_from
    send_ts(port, 2 * FPS)
    runner.join(120)  # ends when the reconnects are used up after the second burst
    assert rc == [0]
    err = capsys.readouterr().err
    with av.open(str(out)) as c:
        vt = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    gaps = np.diff(vt)
    print(f"\n[stream] reconnect: {len(vt)} frames, longest gap {gaps.max():.2f} s; {err.strip().splitlines()[-1]}")
    assert (gaps > 0).all(), "output time went back after the reconnect"
    # The gap is the sender's silence less what the reopened reader's probe swallows: the probe's first second
    # arrives at once and only its newest frame is kept (measured gaps 1.65-2.1 s for a 2.5 s silence).
    assert gaps.max() > silence - 1.0 - 1 / FPS, ("the outage is not where it was", silence)
    before, after = int(np.argmax(gaps)) + 1, len(vt) - int(np.argmax(gaps)) - 1
    print(f"[stream] frames before the outage {before}, after {after}")
    assert before >= FPS // 2 and after >= FPS // 2, (before, after)  # the live second is not dropped
    done = re.search(r"(\d+) reconnect\(s\)", err)
    assert done and int(done.group(1)) >= 1, err


def test_file_with_audio_to_udp_keeps_audio_and_duration(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    n = 30
    make_clip(clip, n=n)
    rx = start_receiver()
    port = rx.port
    t0 = time.monotonic()
    assert main(["stylize", str(clip), f"udp://127.0.0.1:{port}", "--style", "monet"]) == 0
    took = time.monotonic() - t0
    rx.join(60)
    assert rx.error is None, rx.error
    assert rx.codecs == ("h264", "aac"), rx.codecs
    video_s = rx.video_t[-1] - rx.video_t[0] + 1 / FPS
    audio_s = rx.samples / rx.rate
    print(f"\n[stream] file -> udp in {took:.1f} s: {len(rx.video_t)} of {n} frames, video {video_s:.3f} s, "
          f"audio {audio_s:.3f} s (input {n / FPS:.3f} s)")
    assert len(rx.video_t) >= 0.8 * n
    assert abs(video_s - n / FPS) <= 1 / FPS + 1e-6, "duration changed by more than one frame"
    assert abs(audio_s - n / FPS) <= 1 / FPS, "audio duration changed by more than one frame"
    assert abs(rx.audio_t[0] - rx.video_t[0]) <= 1 / FPS, "audio and video start apart"
    # Real-time pacing: a 2 s file takes about 2 s to send, not a burst.
    assert took >= 0.8 * n / FPS
    # Pacing is steady: frames are not bunched (gaps between frame times are one frame, bar drops).
    gaps = np.diff(rx.video_t)
    assert np.median(gaps) == pytest.approx(1 / FPS, abs=0.002)


def test_bad_stream_targets_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "c.mp4"
    make_clip(clip, n=3, audio=None)
    cases = [
        (["stylize", "ftp://host/x.ts", str(tmp_path / "o.mkv")], "unsupported input protocol"),
        (["stylize", str(clip), "smb://host/x"], "unsupported output protocol"),
        (["stylize", "udp://127.0.0.1:9?localaddr=127.0.0.1", str(tmp_path / "o.webm")], "webm"),
        (["stylize", str(clip), "rtmp://127.0.0.1:9/live/x"], "rtmp://127.0.0.1:9/live/x: cannot"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("realtime: error: ") and words in err[0], err
    assert not (tmp_path / "o.mkv").exists()

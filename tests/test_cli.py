"""The `realtime` command as a user meets it: --version, a busy port, the token URL, overwrite refusal,
stdin/stdout, the file type read from content, progress in logs, -q/-v/--log-level, and a run without torch."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engines.loader import load_backend
from realtime.cli import build_parser, main
from realtime.stylize.progress import Progress
from tests.conftest import free_port
from tests.test_stylize import N, make_clip, read_video

REPO = Path(__file__).resolve().parents[1]


def _realtime(*args: str, stdin: bytes | None = None, module: str = "realtime",
              timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, input=stdin, capture_output=True,
                          timeout=timeout, check=False)


def _photo(path: Path, w: int = 96, h: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h)], -1).astype(np.uint8)
    rgb[h // 4 : h // 2, w // 4 : w // 2] = (230, 40, 40)
    Image.fromarray(rgb).save(path, format="PNG")
    return rgb


@pytest.mark.unit
def test_version_from_the_command_and_from_python_m() -> None:
    from importlib.metadata import version

    res = _realtime("--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().strip() == f"realtime (stylizer) {version('stylizer')}"


@pytest.mark.unit
def test_every_command_takes_log_level_quiet_and_verbose() -> None:
    parser = build_parser()
    for command, extra in (("serve", []), ("stylize", ["a.png", "b.png"]), ("bench", [])):
        assert parser.parse_args([command, "-q", *extra]).quiet
        assert parser.parse_args([command, "-v", *extra]).verbose
        assert parser.parse_args([command, "--log-level", "error", *extra]).log_level == "error"
    res = _realtime("stylize", "-q", "-v", "a.png", "b.png")
    assert res.returncode == 2 and "not allowed with" in res.stderr.decode()
    assert len(res.stderr.decode().strip().splitlines()) == 1


@pytest.mark.unit
def test_stylize_help_names_the_default_style_and_list_styles_prints_the_bank() -> None:
    names = load_backend().style_names
    text = build_parser()._subparsers._group_actions[0].choices["stylize"].format_help()  # type: ignore[union-attr]
    assert f"default: {names[0]}" in text
    res = _realtime("stylize", "--list-styles")
    assert res.returncode == 0 and res.stdout.decode().split() == list(names)


@pytest.mark.integration
def test_busy_port_is_one_line_and_exit_2_and_the_token_url_is_printed_once() -> None:
    """A real server on a terminal prints its /?token= URL once; a second one on its port fails in one line."""
    port, token = free_port(), "t0k3n-for-the-page"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "realtime", "serve", "--port", str(port), "--token", token],
                            cwd=REPO, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 120
        while b"/?token=" not in out and time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    break
        text = out.decode(errors="replace")
        assert f"realtime: open http://127.0.0.1:{port}/?token={token}" in text, text
        t0 = time.monotonic()
        busy = _realtime("serve", "--port", str(port))
        assert busy.returncode == 2
        err = busy.stderr.decode().strip().splitlines()
        want = (f"realtime: error: cannot listen on 127.0.0.1:{port}: address already in use "
                "(is another server running? pick another --port)")
        assert err == [want], err
        assert b"serving" not in busy.stdout
        assert time.monotonic() - t0 < 30  # refused before the model loads
        time.sleep(0.5)
        while select.select([master], [], [], 0.2)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
        assert out.decode(errors="replace").count("/?token=") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        os.close(master)


@pytest.mark.unit
def test_busy_port_held_by_any_listener(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        res = _realtime("serve", "--port", str(s.getsockname()[1]))
    assert res.returncode == 2 and "address already in use" in res.stderr.decode()
    assert len(res.stderr.decode().strip().splitlines()) == 1 and b"Traceback" not in res.stderr


@pytest.mark.integration
def test_overwrite_is_refused_without_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    _photo(src)
    out.write_bytes(b"keep me")
    assert main(["stylize", str(src), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"realtime: error: {out} exists; pass --overwrite to replace it"], err
    assert out.read_bytes() == b"keep me"
    assert main(["stylize", str(src), str(out), "--overwrite", "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no summary line
    with Image.open(out) as im:
        assert im.size == (96, 64)


@pytest.mark.integration
def test_image_through_stdin_and_stdout_is_the_same_as_through_files(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    rgb = _photo(src)
    res = _realtime("stylize", "-", "-", "--style", "hokusai", stdin=src.read_bytes())
    assert res.returncode == 0, res.stderr
    assert res.stderr.decode().strip().splitlines()[-1] == "wrote stdout: 96x64 image"
    with Image.open(io.BytesIO(res.stdout)) as im:
        assert im.format == "PNG"  # the default type on stdout for an image
        piped = np.asarray(im.convert("RGB"))
    assert main(["stylize", str(src), str(tmp_path / "file.png"), "--style", "hokusai"]) == 0
    with Image.open(tmp_path / "file.png") as im:
        assert np.array_equal(piped, np.asarray(im.convert("RGB")))
    assert np.abs(piped.astype(int) - rgb).mean() > 2  # stylized, not passed through
    jpg = _realtime("stylize", "-", "-", "--format", "jpg", stdin=src.read_bytes())
    assert jpg.returncode == 0 and jpg.stdout[:3] == b"\xff\xd8\xff"
    empty = _realtime("stylize", "-", str(tmp_path / "x.png"), stdin=b"")
    assert empty.returncode == 2 and empty.stderr.decode().strip() == "realtime: error: stdin was empty: nothing to stylize"


@pytest.mark.integration
def test_video_through_stdin_and_stdout_keeps_every_frame_and_the_audio(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip)  # mp4 with its index at the end: stdin is copied to a file first, so it still reads
    res = _realtime("stylize", "-", "-", stdin=clip.read_bytes())
    assert res.returncode == 0, res.stderr
    assert b"\r" not in res.stderr  # stderr is a pipe here: no redrawn progress bar
    out = tmp_path / "out.mkv"
    out.write_bytes(res.stdout)
    with av.open(str(out)) as c:
        assert c.format.name.startswith("matroska")  # the default type on stdout for a video
    frames, _, audio = read_video(out)
    assert len(frames) == N and audio is not None and audio > 1.0


@pytest.mark.integration
def test_file_type_comes_from_content_not_the_name(tmp_path: Path) -> None:
    photo, clip = tmp_path / "photo.mp4", tmp_path / "clip.png"
    _photo(photo)  # a PNG called .mp4
    make_clip(tmp_path / "clip.mp4", n=4, audio=None)
    (tmp_path / "clip.mp4").rename(clip)  # an mp4 called .png
    assert main(["stylize", str(photo), str(tmp_path / "a.jpg")]) == 0
    with Image.open(tmp_path / "a.jpg") as im:
        assert im.size == (96, 64)
    assert main(["stylize", str(clip), str(tmp_path / "b.mp4")]) == 0
    assert len(read_video(tmp_path / "b.mp4")[0]) == 4
    assert main(["stylize", str(clip), str(tmp_path / "c.png")]) == 2  # a video cannot become a png


@pytest.mark.integration
def test_mood_emoji_and_caption_kind_reach_the_frame(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    _photo(src, 320, 180)

    def run(*extra: str) -> np.ndarray:
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}.png"
        assert main(["stylize", str(src), str(out), *extra]) == 0
        with Image.open(out) as im:
            return np.asarray(im.convert("RGB")).astype(int)

    plain = run()
    party = run("--mood", "party time", "--emoji")  # the mood's blend, without its stickers
    assert np.abs(party - plain).mean() > 3  # another blend than the default style
    sticker = run("--mood", "party time")
    assert np.abs(sticker - party).max() > 100  # the mood's emoji are drawn
    assert np.abs(run("--emoji", "fire") - plain).max() > 100
    top = run("--caption", "HELLO", "--caption-kind", "meme-top")
    bottom = run("--caption", "HELLO")
    rows_top = np.nonzero(np.abs(top - plain).max(axis=(1, 2)) > 60)[0]
    rows_bottom = np.nonzero(np.abs(bottom - plain).max(axis=(1, 2)) > 60)[0]
    assert rows_top.max() < 90 < rows_bottom.min()  # the caption moved to the top half
    with pytest.raises(SystemExit):
        main(["stylize", str(src), str(tmp_path / "x.png"), "--caption-kind", "sideways"])


@pytest.mark.unit
def test_progress_off_a_terminal_is_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress(10, "clip.mp4", every_s=0.0)
    for _ in range(3):
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("clip.mp4: 3/10 frames (30%), ") and "left" in lines[-1]
    quiet = Progress(10, "clip.mp4", every_s=0.0, quiet=True)
    quiet.update()
    assert capsys.readouterr().err == ""


@pytest.mark.integration
def test_stylize_runs_without_torch(tmp_path: Path) -> None:
    """The default back-end on an install without torch: no module on the path even tries to import it."""
    from tests.notorch import MARK

    src, out, clip = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "clip.mp4"
    rgb = _photo(src)
    res = _realtime("stylize", str(src), str(out), "--caption", "hi", module="tests.notorch")
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert MARK not in res.stderr.decode(), res.stderr.decode()
    with Image.open(out) as im:
        got = np.asarray(im.convert("RGB")).astype(int)
    assert got.shape == rgb.shape and np.abs(got - rgb).mean() > 2
    make_clip(clip, n=6)
    res = _realtime("stylize", str(clip), str(tmp_path / "out.mp4"), "--mood", "party time", module="tests.notorch")
    assert res.returncode == 0 and MARK not in res.stderr.decode(), res.stderr.decode()[-3000:]
    assert len(read_video(tmp_path / "out.mp4")[0]) == 6
    torch_only = _realtime("stylize", str(src), str(tmp_path / "t.png"), "--backend", "torch", module="tests.notorch")
    assert torch_only.returncode == 2
    assert torch_only.stderr.decode().strip().endswith("pip install 'stylizer[torch]'")

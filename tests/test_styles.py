"""Your own style: the fit, the library on disk, and the API on a real server with a live stream.

Real parts throughout: the bundled model's weights, real pictures (the bundled calibration frames and
fixture pictures made here with Pillow), a real `realtime serve` process, real aiortc peers. The fits
in the server tests are short (--fit-steps) so the suite stays cheap; the full-length fit's speed and
quality are measured by `python -m train style-fit-eval` (docs/styles.md), not asserted here.
"""

from __future__ import annotations

import asyncio
import io
import json
import multiprocessing
import resource
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import torch
from PIL import Image

from engines.artifact import load_artifact
from engines.loader import load_backend
from engines.student import film_weights, mix_film
from engines.style_fit import FitConfig, FitDiverged, content_frames, fit_style
from engines.style_library import (
    MAX_BYTES,
    StorageFull,
    StyleConflict,
    StyleError,
    StyleLibrary,
    read_picture,
)
from realtime.live import ice
from tests.apphelpers import loop_thread, private_rtc_randoms
from tests.conftest import run_server
from tests.whipclient import WhepViewer, WhipPublisher, base_scene

TOKEN = "style-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
QUICK = FitConfig(steps=4, crop=64, batch=1, dist_points=512)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def picture(seed: int = 0, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A real photo (a bundled calibration frame), cropped."""
    frames = content_frames()
    f = frames[seed % len(frames)]
    return np.ascontiguousarray(f[: size[0], : size[1]])


def line_drawing() -> np.ndarray:
    """Black strokes on white: unlike any photo."""
    from PIL import ImageDraw

    img = Image.new("RGB", (128, 96), "white")
    d = ImageDraw.Draw(img)
    for i in range(0, 128, 9):
        d.line([(i, 0), (128 - i, 96)], fill="black", width=2)
    return np.asarray(img)


# ---------------------------------------------------------------- the host's mixing


@pytest.mark.unit
def test_host_mixing_is_the_networks_own() -> None:
    """StyleBank.mix (numpy, serve time) gives the FiLM vector the network computes from style weights."""
    art = load_artifact()
    net, bank = art.load_student(), art.style_bank()
    w = torch.tensor([[0.2, 0, 0.5, 0, 0, 0.3, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0.0]])
    s = torch.tensor([[0.7], [1.0]])
    with torch.no_grad():
        want = mix_film(net, film_weights(net.config, w, s)).numpy()
    assert np.allclose(bank.mix(w.numpy(), s.numpy()), want, atol=1e-6)
    extra = bank.with_styles({"mine": bank.row("hokusai")})
    assert extra.names[-1] == "mine" and extra.num_trained == 8
    # A new row named "mine" equal to hokusai's paints exactly what hokusai paints, on a compiled back-end.
    b = load_backend(None, "openvino-fp32")
    x = picture(1, (96, 128))
    before = b.stylize(x, b.weights_vector({"hokusai": 1}))
    b.set_styles({"mine": bank.row("hokusai")})
    assert np.array_equal(b.stylize(x, b.weights_vector({"mine": 1})), before)
    with pytest.raises(ValueError, match="unknown style"):
        b.weights_vector({"nope": 1})


# ---------------------------------------------------------------- bad pictures


def _bomb() -> bytes:
    """A small PNG that decodes to 100 million pixels."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.unit
def test_bad_pictures_get_one_clear_error() -> None:
    good = jpeg(picture())
    assert read_picture(good).shape == (96, 128, 3)
    cases = {
        b"this is not a picture": "not a picture",
        good[: len(good) // 2]: "truncated or corrupt",
        b"": "empty",
        _bomb(): "decompression bomb",
        b"\0" * (MAX_BYTES + 1): "over the 10 MB limit",
        jpeg(np.zeros((8, 8, 3), np.uint8)): "too small",
    }
    for data, message in cases.items():
        with pytest.raises(StyleError, match=message):
            read_picture(data, "x.jpg")


# ---------------------------------------------------------------- the fit


@pytest.mark.unit
def test_fit_moves_only_the_new_row_and_refuses_a_divergence() -> None:
    art = load_artifact()
    res = fit_style(art, [line_drawing(), picture(2)], [2.0, 1.0], cfg=QUICK)
    bank = art.style_bank()
    assert res.vector.shape == (bank.width,) and np.all(np.isfinite(res.vector))
    assert res.weights_sha256 == art.weights_sha256 and res.steps == QUICK.steps
    assert not any(np.array_equal(res.vector, bank.row(n)) for n in bank.names)  # it moved from its start
    assert load_artifact().style_bank().table.tobytes() == bank.table.tobytes()  # the model is untouched
    with pytest.raises(FitDiverged, match="diverged"):
        fit_style(art, [picture(3)], cfg=replace(QUICK, lr=1e30))
    with pytest.raises(ValueError, match="1 to 3"):
        fit_style(art, [picture(0)] * 4, cfg=QUICK)


# ---------------------------------------------------------------- the library


@pytest.mark.unit
def test_library_writes_whole_styles_and_refuses_names(tmp_path: Path) -> None:
    lib = StyleLibrary(tmp_path)
    vec = np.arange(6, dtype=np.float32)
    lib.create("poster", [picture(0), picture(1)], [1.0, 2.0], ["a.jpg", "b.jpg"], "sha-a", vec, {"steps": 1})
    (tmp_path / ".tmp-crashed").mkdir()  # what a crash mid-write leaves: swept, never a style
    lib = StyleLibrary(tmp_path)
    assert lib.names() == ["poster"] and not (tmp_path / ".tmp-crashed").exists()
    style = lib.get("poster")
    assert style.weights == [1.0, 2.0] and Image.open(style.thumb).size == (160, 160)
    assert np.array_equal(style.vector("sha-a"), vec) and style.vector("sha-b") is None
    assert lib.stale("sha-b") == ["poster"] and lib.vectors("sha-a").keys() == {"poster"}
    for bad in ("../etc", "Poster", "a b", "", "x" * 33, "a/b", ".hidden"):
        with pytest.raises(StyleError, match="not allowed"):
            lib.create(bad, [picture()], [1.0], ["a"], "sha-a", vec, {})
    with pytest.raises(StyleConflict):
        lib.create("poster", [picture()], [1.0], ["a"], "sha-a", vec, {})
    with pytest.raises(StyleConflict):
        lib.create("vangogh", [picture()], [1.0], ["a"], "sha-a", vec, {}, taken=("vangogh",))
    lib.add_vector("poster", "sha-b", vec + 1, {})
    assert np.array_equal(lib.get("poster").vector("sha-b"), vec + 1)
    lib.rename("poster", "flyer")
    assert lib.names() == ["flyer"] and lib.get("flyer").vector("sha-a") is not None
    lib.remove("flyer")
    assert lib.names() == [] and [p.name for p in tmp_path.iterdir()] == []


def _create_with_file_limit(root: str, queue: multiprocessing.Queue) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails (EFBIG), as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    lib = StyleLibrary(root)
    try:
        lib.create("big", [picture(0, (400, 600))], [1.0], ["a"], "sha", np.zeros(4, np.float32), {})
        queue.put("written")
    except StorageFull as exc:
        queue.put(f"full: {exc}")


@pytest.mark.unit
def test_a_full_disk_is_one_clear_error_and_leaves_no_half_style(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_create_with_file_limit, args=(str(tmp_path), queue))
    proc.start()
    proc.join(60)
    outcome = queue.get(timeout=5)
    assert outcome.startswith("full: no room to save the style"), outcome
    assert list(tmp_path.iterdir()) == []  # no style folder, no temporary left


# ---------------------------------------------------------------- the server


def _form(name: str, files: list[tuple[str, bytes]], weights: str | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("name", name)
    for fname, data in files:
        form.add_field("image", data, filename=fname, content_type="image/jpeg")
    if weights is not None:
        form.add_field("weights", weights)
    return form


async def _post(http: aiohttp.ClientSession, base: str, form: aiohttp.FormData,
                headers: dict | None = None) -> tuple[int, dict]:
    async with http.post(f"{base}/api/styles", data=form, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json()


async def _wait_job(http: aiohttp.ClientSession, base: str, job: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    seen_progress = []
    while time.monotonic() < deadline:
        async with http.get(f"{base}/api/styles/jobs/{job}", headers=AUTH) as r:
            body = (await r.json())["job"]
        seen_progress.append(body["progress"])
        if body["state"] not in ("queued", "running"):
            body["seen_progress"] = seen_progress
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"fit {job} did not finish in {timeout} s")


async def _names(http: aiohttp.ClientSession, base: str) -> list[str]:
    async with http.get(f"{base}/api/styles", headers=AUTH) as r:
        assert r.status == 200
        return [s["name"] for s in (await r.json())["styles"]]


@pytest.fixture()
def styles_dir(tmp_path: Path) -> Path:
    return tmp_path / "styles"


def _serve(styles_dir: Path):
    return run_server("--token", TOKEN, "--styles", str(styles_dir), "--fit-steps", "3")


@pytest.mark.integration
def test_bad_uploads_get_clear_errors_and_the_server_goes_on(styles_dir: Path) -> None:
    good = jpeg(picture())
    with _serve(styles_dir) as server, loop_thread() as lt:
        base = server.url

        async def go() -> None:
            async with aiohttp.ClientSession() as http:
                cases = [
                    (_form("a", [("notes.txt", b"plain text")]), 400, "not a picture"),
                    (_form("b", [("cut.jpg", good[: len(good) // 2])]), 400, "truncated or corrupt"),
                    (_form("c", [("bomb.png", _bomb())]), 400, "decompression bomb"),
                    (_form("d", [("big.jpg", good + b"\0" * MAX_BYTES)]), 413, "over the 10 MB limit"),
                    (_form("e", [(f"{i}.jpg", good) for i in range(4)]), 400, "1 to 3 pictures"),
                    (_form("f", []), 400, "1 to 3 pictures"),
                    (_form("../../etc", [("a.jpg", good)]), 400, "not allowed"),
                    (_form("vangogh", [("a.jpg", good)]), 409, "already exists"),
                    (_form("g", [("a.jpg", good)], "1,2"), 400, "one per picture"),
                    (_form("h", [("a.jpg", good)], "nan"), 400, "non-negative"),
                ]
                for form, status, message in cases:
                    got, body = await _post(http, base, form)
                    assert got == status and message in body["error"], (status, message, got, body)
                assert (await _post(http, base, _form("x", [("a.jpg", good)]), headers={}))[0] == 401
                async with http.delete(f"{base}/api/styles/vangogh", headers=AUTH) as r:
                    assert r.status == 400 and "model's own styles" in (await r.json())["error"]
                async with http.delete(f"{base}/api/styles/nothing", headers=AUTH) as r:
                    assert r.status == 404
                async with http.get(f"{base}/healthz") as r:
                    assert r.status == 200  # still serving
                assert await _names(http, base) == list(load_artifact().contract.style_names)

        lt.run(go(), timeout=120)


@pytest.mark.integration
def test_a_style_is_added_used_live_survives_a_restart_and_is_deleted(styles_dir: Path) -> None:
    """Over the API: add (a painting and a line drawing, fused), see it listed, switch a live stream to it
    and see the video change towards what the fitted style paints, restart, delete."""
    scene = base_scene(160, 96)
    with private_rtc_randoms(), loop_thread() as lt:
        with _serve(styles_dir) as server:
            base = server.url

            async def add_and_use() -> dict:
                ice.enable_loopback()
                async with aiohttp.ClientSession() as http:
                    form = _form("fused", [("photo.jpg", jpeg(picture(4))), ("lines.jpg", jpeg(line_drawing()))],
                                 "1,1")
                    status, body = await _post(http, base, form)
                    assert status == 202, body
                    pub, viewer = WhipPublisher(scene, audio=False), WhepViewer(keep=3)
                    assert (await pub.publish(http, f"{base}/whip/cam", TOKEN))[0] == 201
                    assert (await viewer.play(http, f"{base}/whep/cam", TOKEN))[0] == 201
                    await viewer.wait_frames(5)
                    job = await _wait_job(http, base, body["job"]["id"])
                    assert job["state"] == "done", job
                    assert "fused" in await _names(http, base)
                    async with http.get(f"{base}/thumbs/fused.jpg", headers=AUTH) as r:
                        assert r.status == 200 and Image.open(io.BytesIO(await r.read())).size == (160, 160)
                    before = viewer.frames[-1].astype(float)
                    async with http.post(f"{base}/api/streams/cam", json={"style": "fused"}, headers=AUTH) as r:
                        assert r.status == 200, await r.text()
                        assert (await r.json())["weights"] == {"fused": 1.0}
                    await asyncio.sleep(1.0)
                    await viewer.wait_frames(5)
                    after = viewer.frames[-1].astype(float)
                    await viewer.close()
                    await pub.close()
                    return {"before": before, "after": after}

            frames = lt.run(add_and_use(), timeout=240)
        # What the stored vector paints, computed here on another back-end from the library's own file.
        lib = StyleLibrary(styles_dir)
        art = load_artifact()
        ref = load_backend(None, "onnx")
        ref.set_styles(lib.vectors(art.weights_sha256))
        want_new = ref.stylize(scene, ref.weights_vector({"fused": 1})).astype(float)
        want_old = ref.stylize(scene, ref.weights_vector({"vangogh": 1})).astype(float)
        assert np.abs(want_new - want_old).mean() > 3  # the fitted style paints its own picture
        after = frames["after"]
        assert np.abs(after - want_new).mean() < np.abs(after - want_old).mean()
        assert np.abs(frames["before"] - want_old).mean() < np.abs(frames["before"] - want_new).mean()
        manifest = json.loads((styles_dir / "fused" / "manifest.json").read_text())
        assert [r["source"] for r in manifest["references"]] == ["photo.jpg", "lines.jpg"]

        with _serve(styles_dir) as server:  # a restart: the style is still there, and can go
            base = server.url

            async def after_restart() -> None:
                async with aiohttp.ClientSession() as http:
                    assert "fused" in await _names(http, base)
                    async with http.patch(f"{base}/api/styles/fused", json={"name": "mine"}, headers=AUTH) as r:
                        assert r.status == 200
                    assert (await _names(http, base))[-1] == "mine"
                    async with http.delete(f"{base}/api/styles/mine", headers=AUTH) as r:
                        assert r.status == 200
                    assert "mine" not in await _names(http, base)
                    async with http.delete(f"{base}/api/styles/mine", headers=AUTH) as r:
                        assert r.status == 404

            lt.run(after_restart(), timeout=60)
        assert not (styles_dir / "mine").exists()


@pytest.mark.integration
def test_a_queued_fit_can_be_cancelled(styles_dir: Path) -> None:
    good = jpeg(picture())
    with _serve(styles_dir) as server, loop_thread() as lt:
        base = server.url

        async def go() -> None:
            async with aiohttp.ClientSession() as http:
                first = (await _post(http, base, _form("one", [("a.jpg", good)])))[1]["job"]["id"]
                second = (await _post(http, base, _form("two", [("a.jpg", good)])))[1]["job"]["id"]
                async with http.delete(f"{base}/api/styles/jobs/{second}", headers=AUTH) as r:
                    assert (await r.json())["job"]["state"] == "cancelled"
                assert (await _wait_job(http, base, first))["state"] == "done"
                names = await _names(http, base)
                assert "one" in names and "two" not in names

        lt.run(go(), timeout=180)
    assert sorted(p.name for p in styles_dir.iterdir()) == ["one"]


@pytest.fixture(autouse=True)
def _no_stray_children() -> Iterator[None]:
    yield
    for child in multiprocessing.active_children():
        child.join(5)

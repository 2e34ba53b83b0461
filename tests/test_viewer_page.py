"""The viewer page (/view/NAME) in real headless Chromium, fed by a real WHIP publisher (aiortc, in a thread).

Video mode plays the stylized stream over WHEP; overlay mode draws only the expression layer on a
transparent page. Also takes screenshot_overlay.png (overlay mode over a checkerboard, since transparency
shows as whatever is behind it): into a temporary folder, or docs/ with STYLIZER_SCREENSHOTS=docs.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import tempfile
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from realtime.live import ice
from tests.conftest import run_server
from tests.whipclient import WhipPublisher, base_scene, numbered

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
sync_api = pytest.importorskip("playwright.sync_api")
Image = pytest.importorskip("PIL.Image")
CHROMIUM = os.environ.get("STYLIZER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("Chromium not installed (set STYLIZER_CHROMIUM)", allow_module_level=True)

from tests.test_browser import CHROMIUM_ARGS

W, H = 640, 360
TOKEN = "view-token"
BELOW_STRIP = 48


class PublisherThread:
    """A WHIP publisher running in its own thread and event loop (Playwright's sync API owns the main thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        import aiohttp

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ice.enable_loopback()
        pub = WhipPublisher(base_scene(W, H), audio=False)
        try:
            async with aiohttp.ClientSession() as http:
                status, body = await pub.publish(http, self.url, TOKEN)
                if status != 201:
                    raise RuntimeError(f"WHIP publish answered {status}: {body}")
                self.ready.set()
                await self._stop.wait()
                async with http.delete(pub.location, headers={"Authorization": f"Bearer {TOKEN}"}):
                    pass
        except Exception as exc:  # noqa: BLE001  (any failure in the thread is reported by the test)
            self.error = exc
            self.ready.set()
        finally:
            await pub.close()

    def start(self) -> None:
        self.thread.start()
        if not self.ready.wait(60) or self.error:
            raise RuntimeError(f"publisher did not start: {self.error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


def api(base: str, body: dict) -> dict:
    req = urllib.request.Request(f"{base}/api/streams/show", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Viewer:
    """Chromium with the server's pages; console lines kept for the failure report."""

    def __init__(self, server, context, publisher: PublisherThread) -> None:
        self.server = server
        self.context = context
        self.publisher = publisher
        self.console: list[str] = []

    def page(self, path: str):
        page = self.context.new_page()
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        page.goto(self.server.url + path)
        return page

    def debug_sections(self) -> list[tuple[str, str]]:
        return [("browser console", "\n".join(self.console[-80:])), ("server log", self.server.log())]


@pytest.fixture(scope="module")
def viewer():
    with run_server("--token", TOKEN) as srv:
        v = Viewer(srv, None, PublisherThread(f"{srv.url}/whip/show"))
        v.publisher.start()
        profile = tempfile.mkdtemp(prefix="stylizer-viewer-")
        try:
            with sync_api.sync_playwright() as p:
                v.context = p.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                    viewport={"width": W, "height": H}, device_scale_factor=1)
                v.context.set_default_timeout(30_000)
                try:
                    yield v
                finally:
                    v.context.close()
        finally:
            v.publisher.stop()  # the current one (a test may have replaced it)
            shutil.rmtree(profile, ignore_errors=True)


def _png(data_url_or_bytes) -> np.ndarray:
    raw = data_url_or_bytes
    if isinstance(raw, str):
        raw = base64.b64decode(raw.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGBA"))


def test_viewer_page_plays_the_stylized_stream(viewer: Viewer) -> None:
    from engines.loader import load_backend

    page = viewer.page(f"/view/show?token={TOKEN}")
    page.wait_for_function("window.viewer && window.viewer.state === 'live'", timeout=60_000)
    page.wait_for_function("document.getElementById('video').videoWidth > 0", timeout=30_000)
    size = page.evaluate("[document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]")
    assert size == [W, H]
    # No controls: nothing on the page but the video (and the hidden canvas / status).
    assert page.evaluate("document.querySelectorAll('button, input, select, a').length") == 0
    assert page.evaluate("document.getElementById('video').controls") is False
    page.wait_for_timeout(1500)
    shot = page.evaluate("""async () => {
        const v = document.getElementById('video');
        await new Promise((r) => v.requestVideoFrameCallback(() => r()));
        const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
        c.getContext('2d').drawImage(v, 0, 0);
        return c.toDataURL('image/png');
    }""")
    got = _png(shot)[..., :3][BELOW_STRIP:].astype(np.float64)
    backend = load_backend()
    inp = numbered(base_scene(W, H), 0)
    expected = backend.stylize(inp, backend.contract.weights_vector({backend.style_names[0]: 1.0}))[BELOW_STRIP:]
    err_model = np.abs(got - expected).mean()
    err_input = np.abs(got - inp[BELOW_STRIP:]).mean()
    print(f"\n[viewer] video mode: mean |frame - model output| {err_model:.1f}, |frame - input| {err_input:.1f}")
    assert err_model < 0.6 * err_input, "the viewer page does not show the stylized stream"
    page.close()


def test_overlay_mode_draws_only_the_expression_layer(viewer: Viewer, screenshot_dir: Path) -> None:
    reply = api(viewer.server.url, {"caption": {"text": "when the build is green", "kind": "meme-bottom"},
                                    "emoji": ["party", "fire", "sparkles"]})
    assert reply["type"] == "state"
    page = viewer.page(f"/view/show?overlay=1&token={TOKEN}")
    page.wait_for_function("window.viewer && window.viewer.drawn >= 2", timeout=60_000)
    assert page.evaluate("document.getElementById('video').hidden") is True
    # The page itself is transparent: screenshot without the browser's default white backdrop.
    rgba = _png(page.screenshot(omit_background=True))
    alpha = rgba[..., 3]
    print(f"\n[viewer] overlay mode: {(alpha == 0).mean():.0%} of the page fully transparent, "
          f"{(alpha == 255).mean():.1%} opaque")
    assert (alpha == 0).mean() > 0.6, "overlay mode is not transparent"
    bottom = alpha[int(H * 0.7):]
    assert (bottom == 255).mean() > 0.03, "no caption drawn at the bottom"
    assert (alpha[int(H * 0.3): int(H * 0.6), int(W * 0.3): int(W * 0.7)] == 0).all(), "the middle should be clear"
    page.close()

    # For the docs: the same over a checkerboard, so the transparency can be seen.
    page = viewer.page(f"/view/show?overlay=1&bg=checker&token={TOKEN}")
    page.wait_for_function("window.viewer && window.viewer.drawn >= 2", timeout=60_000)
    page.wait_for_timeout(500)
    shot = screenshot_dir / "screenshot_overlay.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    page.close()


def test_viewer_page_waits_for_the_stream_and_comes_back(viewer: Viewer) -> None:
    """An OBS browser source stays open for hours: it must follow the stream going away and coming back."""
    page = viewer.page(f"/view/show?token={TOKEN}")
    page.wait_for_function("window.viewer.state === 'live'", timeout=60_000)
    viewer.publisher.stop()  # the publisher DELETEs its session: the stream ends
    page.wait_for_function("window.viewer.state === 'waiting'", timeout=20_000)
    viewer.publisher = PublisherThread(f"{viewer.server.url}/whip/show")
    viewer.publisher.start()
    page.wait_for_function("window.viewer.state === 'live' && document.getElementById('video').videoWidth > 0",
                           timeout=60_000)
    page.close()


def test_viewer_page_says_why_without_the_right_token(viewer: Viewer) -> None:
    for path, words in (("/view/show", "needs a token"), ("/view/show?token=not-it", "not the server's token")):
        page = viewer.page(path)
        page.wait_for_selector("#message:not([hidden])", timeout=15_000)
        text = page.inner_text("#message")
        print(f"\n[viewer] {path}: {text!r}")
        assert words in text and page.evaluate("window.viewer.refused.status") == 401
        if "needs" in words:
            assert "/view/show?token=TOKEN" in text and "show" in page.inner_text("#message b")
        page.close()
    # The right token: the message is gone once the stream plays.
    page = viewer.page(f"/view/show?token={TOKEN}")
    page.wait_for_function("window.viewer && window.viewer.state === 'live'", timeout=60_000)
    assert page.is_hidden("#message")
    page.close()

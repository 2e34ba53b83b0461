"""WHIP in, WHEP out, the control API: real aiortc peers against a real `realtime serve --token` subprocess.

A WHIP publisher sends numbered 640x360 frames (and a tone); WHEP viewers pull the stylized
stream. Checked: the content is the model's stylization of the exact input frame, two viewers
share one inference per frame, the API changes a running stream, overlay-only viewers get the
expression layer, a viewer's `status` channel stays open until its session ends (other labels are
closed), DELETE ends sessions cleanly, bad tokens get 401 and bad offers 400.
WHIP -> WHEP latency (frame index drawn into each frame, tests/framecode.py) is printed.
"""

from __future__ import annotations

import asyncio
import base64
import io
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import numpy as np
import pytest
from PIL import Image

from engines.loader import load_backend
from realtime.live import ice
from tests.conftest import run_server
from tests.whipclient import WhepViewer, WhipPublisher, base_scene, latencies_ms, numbered

pytestmark = pytest.mark.integration

W, H = 640, 360
TOKEN = "s3cret-token"
COUNT_S = 6.0
BELOW_STRIP = 48  # rows under the frame-index strip (16 px blocks at 640 wide) and the network's reach around it


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw) -> tuple[int, dict]:
    async with http.request(method, url, **kw) as r:
        try:
            return r.status, await r.json(content_type=None)
        except ValueError:
            return r.status, {"text": await r.text()}


async def _wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step)
    return False


def _closed(channel) -> Callable[[], Awaitable[bool]]:
    """A _wait_for predicate: the data channel is closed."""
    async def check() -> bool:
        return channel.readyState == "closed"
    return check


async def _scenario(base: str, styles: tuple[str, ...]) -> dict:
    ice.enable_loopback()  # this process's peers gather 127.0.0.1 only
    out: dict = {}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    scene = base_scene(W, H)
    async with aiohttp.ClientSession() as http:
        # ------------------------------------------------ refusals before anything is live
        probe = WhipPublisher(scene, audio=False)
        await probe.pc.setLocalDescription(await probe.pc.createOffer())
        sdp = probe.pc.localDescription.sdp.encode()
        sdp_type = {"Content-Type": "application/sdp"}
        async with http.post(f"{base}/whip/test", data=sdp, headers=sdp_type) as r:
            out["no_token"] = r.status
        async with http.post(f"{base}/whip/test", data=sdp, headers={**sdp_type, "Authorization": "Bearer nope"}) as r:
            out["bad_token"] = (r.status, r.headers.get("WWW-Authenticate"), (await r.json())["error"])
        async with http.post(f"{base}/whep/test", data=sdp, headers={**sdp_type, "Authorization": "Bearer x"}) as r:
            out["whep_bad_token"] = r.status
        out["api_bad_token"] = (await _json(http, "GET", f"{base}/api/streams", headers={"Authorization": "Bearer x"}))[0]
        out["malformed"] = await _json(http, "POST", f"{base}/whip/test", data=b"v=0 garbage",
                                       headers={**sdp_type, **auth})
        out["not_sdp"] = await _json(http, "POST", f"{base}/whip/test", data=b"hello",
                                     headers={**sdp_type, **auth})
        out["wrong_type"] = (await _json(http, "POST", f"{base}/whip/test", json={"sdp": "v=0"}, headers=auth))[0]
        out["bad_name"] = (await _json(http, "POST", f"{base}/whip/bad.name", data=sdp,
                                       headers={**sdp_type, **auth}))[0]
        out["whep_not_live"] = (await _json(http, "POST", f"{base}/whep/test", data=sdp,
                                            headers={**sdp_type, **auth}))[0]
        await probe.close()

        # ------------------------------------------------ publish, two viewers
        pub = WhipPublisher(scene)
        status, _ = await pub.publish(http, f"{base}/whip/test", TOKEN)
        out["publish"] = (status, pub.location)
        a = WhepViewer(audio=True, keep=40)
        b = WhepViewer()
        # Like the viewer page: an idle `status` channel tells it when the session ends; any other label is closed.
        b_status, b_extra = b.pc.createDataChannel("status"), b.pc.createDataChannel("extra")
        out["view_a"] = (await a.play(http, f"{base}/whep/test", TOKEN))[0]
        out["view_b"] = (await b.play(http, f"{base}/whep/test", TOKEN))[0]
        out["locations"] = (a.location, b.location)
        await a.wait_frames(20, timeout=60)
        await b.wait_frames(5, timeout=30)
        out["b_extra_closed"] = await _wait_for(_closed(b_extra), 10)
        await asyncio.sleep(1.5)  # the viewer page reconnected about 1 s after its status channel was closed
        out["b_status_state"] = b_status.readyState

        # Content: the first style (a new stream's default), compared with the model's output (below the strip).
        out["plain"] = a.frames[-4:]

        # The frame index must survive the restyling to be read back; at full strength this model paints over it.
        # Strength is an input of the network, so the work (and the latency) is the same at 0.5.
        out["half"] = await _json(http, "POST", f"{base}/api/streams/test", json={"strength": 0.5}, headers=auth)
        await asyncio.sleep(1.0)

        # One inference per frame, whatever the viewer count: count over a window.
        _, s0 = await _json(http, "GET", f"{base}/api/streams/test/stats", headers=auth)
        a0, b0, sent0 = a.count, b.count, pub.video.i
        t0 = time.monotonic()
        await asyncio.sleep(COUNT_S)
        _, s1 = await _json(http, "GET", f"{base}/api/streams/test/stats", headers=auth)
        a1, b1, sent1 = a.count, b.count, pub.video.i
        out["count"] = {"inferences": s1["inferences"] - s0["inferences"], "frames_in": s1["frames_in"] - s0["frames_in"],
                        "a": a1 - a0, "b": b1 - b0, "sent": sent1 - sent0, "seconds": time.monotonic() - t0,
                        "stats": s1}
        both = [i for i in a.indices[a0:a1] if i is not None]
        out["shared_indices"] = (len(set(both) & {i for i in b.indices[b0:b1] if i is not None}), len(set(both)))
        window = {i % 4096 for i in range(sent0, sent1)}  # steady state: frames sent during the count
        out["latency_ms"] = latencies_ms({i: t for i, t in pub.video.sent.items() if i in window}, a.arrivals)
        out["audio_frames"] = a.audio_frames
        async with http.get(f"{base}/metrics", headers=auth) as r:
            out["metrics_live"] = (r.status, r.headers.get("Content-Type", ""), await r.text())

        # ------------------------------------------------ control API
        _, listing = await _json(http, "GET", f"{base}/api/streams", headers=auth)
        out["listing"] = listing
        out["style_reply"] = await _json(http, "POST", f"{base}/api/streams/test",
                                         json={"style": styles[1], "strength": 1, "id": 7}, headers=auth)
        out["api_errors"] = [
            await _json(http, "POST", f"{base}/api/streams/test", json={"bogus": 1}, headers=auth),
            await _json(http, "POST", f"{base}/api/streams/test", data=b'{"strength": NaN}',
                        headers={**auth, "Content-Type": "application/json"}),
            await _json(http, "POST", f"{base}/api/streams/test", json={"strength": 2}, headers=auth),
            await _json(http, "POST", f"{base}/api/streams/test", json={"caption": "x" * 201}, headers=auth),
            await _json(http, "POST", f"{base}/api/streams/test", data=b"caption=hi",
                        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"}),
            await _json(http, "POST", f"{base}/api/streams/nope", json={"strength": 1}, headers=auth),
        ]
        await asyncio.sleep(1.5)
        await a.wait_frames(15)
        out["styled"] = a.frames[-4:]

        # ------------------------------------------------ overlay-only viewer
        c = WhepViewer(video=False, overlay=True)
        out["view_c"] = (await c.play(http, f"{base}/whep/test", TOKEN))[0]
        out["mood_reply"] = await _json(http, "POST", f"{base}/api/streams/test",
                                        json={"caption": {"text": "HELLO", "kind": "meme-bottom"},
                                              "emoji": ["party", "fire"]}, headers=auth)

        async def has_overlay() -> bool:
            return any(m["type"] == "overlay" and len(m["items"]) >= 2 for m in c.messages)

        out["overlay_arrived"] = await _wait_for(has_overlay, 20)
        out["overlay_messages"] = list(c.messages)
        _, out["stats_with_overlay"] = await _json(http, "GET", f"{base}/api/streams/test/stats", headers=auth)

        # ------------------------------------------------ a new publish to a live name takes over (OBS reconnecting)
        swap = WhipPublisher(scene, audio=False, codec="H264")  # and in H.264, which is what OBS sends
        status, answer = await swap.publish(http, f"{base}/whip/test", TOKEN)
        out["swap"] = (status, "H264/90000" in answer)
        try:
            await a.wait_frames(10, timeout=30)  # the viewer keeps its session and gets the new publisher's frames
            out["viewer_survived_swap"] = True
        except AssertionError:
            out["viewer_survived_swap"] = False
        _, out["stats_after_swap"] = await _json(http, "GET", f"{base}/api/streams/test/stats", headers=auth)
        async with http.delete(pub.location, headers=auth) as r:
            out["delete_replaced_pub"] = r.status  # no longer the publisher of the stream

        # ------------------------------------------------ DELETE
        async with http.delete(b.location, headers=auth) as r:
            out["delete_b"] = r.status
        async with http.delete(b.location, headers=auth) as r:
            out["delete_b_again"] = r.status
        out["b_status_closed_by_delete"] = await _wait_for(_closed(b_status), 10)
        async with http.delete(swap.location, headers={"Authorization": "Bearer nope"}) as r:
            out["delete_pub_bad_token"] = r.status
        _, out["stats_after_b"] = await _json(http, "GET", f"{base}/api/streams/test/stats", headers=auth)
        async with http.delete(swap.location, headers=auth) as r:
            out["delete_pub"] = r.status
        _, out["listing_after"] = await _json(http, "GET", f"{base}/api/streams", headers=auth)
        try:
            await asyncio.wait_for(a.ended.wait(), 10)
            out["a_ended"] = True
        except TimeoutError:
            out["a_ended"] = False
        out["whep_after_end"] = (await _json(http, "POST", f"{base}/whep/test", data=b"v=0\r\n",
                                             headers={**sdp_type, **auth}))[0]

        # ------------------------------------------------ publishing again keeps the stream's settings
        pub2 = WhipPublisher(scene, audio=False)
        out["republish"] = (await pub2.publish(http, f"{base}/whip/test", TOKEN))[0]
        out["republished_state"] = (await _json(http, "GET", f"{base}/api/streams/test", headers=auth))[1]
        async with http.delete(pub2.location, headers=auth) as r:
            out["delete_pub2"] = r.status
        for peer in (a, b, c, pub, swap, pub2):
            await peer.close()
        async with http.get(f"{base}/healthz") as r:
            out["health"] = r.status
        async with http.get(f"{base}/metrics", headers=auth) as r:
            out["metrics_end"] = await r.text()  # every stream ended: its counts are retired, not lost
    return out


@pytest.fixture(scope="module")
def backend():
    return load_backend()


@pytest.fixture(scope="module")
def feeds(backend) -> dict:
    # Served as `scripts/serve.sh` installs it, without torch: every test below also proves the serving path
    # (WHIP in, stylize, WHEP out, the control API) runs on OpenVINO alone.
    with run_server("--token", TOKEN, module="tests.notorch") as srv:
        out = asyncio.run(_scenario(srv.url, backend.style_names))
        out["log"] = srv.log(20000)
        out["full_log"] = srv.log(10**7)
    return out


def test_the_server_runs_without_torch(feeds: dict) -> None:
    from tests.notorch import MARK

    log = feeds["full_log"]
    assert "back-end: openvino" in log, log[:2000]
    assert MARK not in log, [line for line in log.splitlines() if MARK in line]


def test_bad_token_gets_401_and_bad_offers_400(feeds: dict) -> None:
    assert feeds["no_token"] == 401
    status, challenge, message = feeds["bad_token"]
    assert status == 401 and challenge and challenge.startswith("Bearer") and "wrong bearer token" in message
    assert feeds["whep_bad_token"] == 401 and feeds["api_bad_token"] == 401
    assert feeds["malformed"][0] == 400 and "invalid offer" in feeds["malformed"][1]["error"]
    assert feeds["not_sdp"][0] == 400 and "v=0" in feeds["not_sdp"][1]["error"]
    assert feeds["wrong_type"] == 415
    assert feeds["bad_name"] == 400
    assert feeds["whep_not_live"] == 404


def test_whip_publish_and_whep_answers(feeds: dict) -> None:
    status, location = feeds["publish"]
    assert status == 201 and location and "/whip/test/" in location and location.startswith("http://127.0.0.1:")
    assert feeds["view_a"] == 201 and feeds["view_b"] == 201
    assert all("/whep/test/" in loc for loc in feeds["locations"]) and len(set(feeds["locations"])) == 2
    assert feeds["audio_frames"] > 20, "the publisher's audio did not reach the viewer"


def _check_stylized(frames: list[np.ndarray], backend, style: str) -> tuple[float, float]:
    """Median PSNR of received frames to the model's output and to the input, below the frame-index strip."""
    assert len(frames) >= 3, f"only {len(frames)} frames kept"
    inp = numbered(base_scene(W, H), 0)[BELOW_STRIP:]
    expected = backend.stylize(numbered(base_scene(W, H), 0), backend.contract.weights_vector({style: 1.0}))
    expected = expected[BELOW_STRIP:]
    to_model = [psnr(f[BELOW_STRIP:], expected) for f in frames]
    to_input = [psnr(f[BELOW_STRIP:], inp) for f in frames]
    return statistics.median(to_model), statistics.median(to_input)


def test_whep_frames_are_the_models_stylization(feeds: dict, backend) -> None:
    model, inp = _check_stylized(feeds["plain"], backend, backend.style_names[0])
    print(f"\n[feeds] PSNR of WHEP frames to the model's output {model:.1f} dB, to the input {inp:.1f} dB")
    # The painted default is far from its input (13 dB), and its strokes cost VP8 more than the residual
    # students' tints did: about 21 dB to the model's own output, where those reached 22+.
    assert model > inp + 3 and model > 18


def test_control_api_changes_the_running_stream(feeds: dict, backend) -> None:
    assert feeds["half"][0] == 200 and feeds["half"][1]["strength"] == 0.5
    status, reply = feeds["style_reply"]
    assert status == 200 and reply["type"] == "state" and reply["id"] == 7
    assert reply["weights"] == {backend.style_names[1]: 1.0} and reply["strength"] == 1
    model, _ = _check_stylized(feeds["styled"], backend, backend.style_names[1])
    old, _ = _check_stylized(feeds["styled"], backend, backend.style_names[0])
    print(f"\n[feeds] after the API switched style: PSNR to new style {model:.1f} dB, old style {old:.1f} dB")
    assert model > old + 3 and model > 18  # the painted default's floor, as in the WHEP test above
    # The data channel's validation, word for word.
    errs = feeds["api_errors"]
    assert [s for s, _ in errs] == [400, 400, 400, 400, 415, 404]
    assert "unknown field" in errs[0][1]["error"]
    assert "NaN" in errs[1][1]["error"]
    assert "between 0 and 1" in errs[2][1]["error"]
    assert "too long" in errs[3][1]["error"]
    listing = feeds["listing"]["streams"]
    assert [s["stream"] for s in listing] == ["test"] and listing[0]["stats"]["live"] is True


def test_two_viewers_share_one_inference_per_frame(feeds: dict) -> None:
    c = feeds["count"]
    print(f"\n[feeds] over {c['seconds']:.1f} s: {c['sent']} frames sent, {c['frames_in']} received by the server, "
          f"{c['inferences']} inferences; viewer A got {c['a']}, viewer B got {c['b']}; "
          f"shared frame indices {feeds['shared_indices']}")
    assert c["stats"]["viewers"] == 2
    assert c["inferences"] > 10, "the stream is not being stylized"
    assert c["inferences"] <= c["frames_in"] + 2, "a frame was stylized more than once"
    # Each viewer got (nearly) every stylized frame, so together they got about twice the inferences:
    # one inference per frame for both. With an inference per viewer, inferences would be about a + b.
    assert c["a"] >= 0.8 * c["inferences"] and c["b"] >= 0.8 * c["inferences"]
    assert c["inferences"] <= 0.65 * (c["a"] + c["b"])
    shared, total = feeds["shared_indices"]
    assert shared >= 0.8 * total, "the two viewers did not get the same frames"


def test_overlay_only_viewer_gets_the_expression_layer(feeds: dict) -> None:
    assert feeds["view_c"] == 201 and feeds["mood_reply"][0] == 200
    assert feeds["overlay_arrived"], feeds["overlay_messages"][-3:]
    msgs = feeds["overlay_messages"]
    sprites = {m["id"]: m for m in msgs if m["type"] == "sprite"}
    last = [m for m in msgs if m["type"] == "overlay"][-1]
    assert (last["w"], last["h"]) == (W, H)
    for item in last["items"]:
        assert item["id"] in sprites, "an overlay used a sprite that was never sent"
        png = sprites[item["id"]]["png"].split(",", 1)[1]
        rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))
        assert rgba.shape[2] == 4
        alpha = rgba[..., 3]
        # Drawn on a transparent ground, not on an opaque plate: clear corners, and clear and opaque pixels both.
        # A 109x57 sprite seen in two fresh-clone CI runs was 2.2% clear: a floor of 5% failed a good sprite.
        corners = alpha[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners == 0).any() and (alpha == 0).mean() > 0.01 and (alpha == 255).mean() > 0.02, \
            f"sprite has no real transparency ({rgba.shape[1]}x{rgba.shape[0]}, corners {corners.tolist()})"
    assert feeds["stats_with_overlay"]["overlay_viewers"] == 1


def test_viewer_status_channel_stays_open_until_the_session_ends(feeds: dict) -> None:
    """The viewer page's `status` channel is its end-of-session signal: closing it early made the page reconnect."""
    assert feeds["b_status_state"] == "open", "the server closed the viewer's status channel"
    assert feeds["b_extra_closed"], "a data channel with an unknown label was kept open"
    assert feeds["b_status_closed_by_delete"], "the status channel did not close when the session was deleted"


def test_a_new_publish_takes_over_and_keeps_the_viewers(feeds: dict) -> None:
    assert feeds["swap"] == (201, True)
    assert feeds["viewer_survived_swap"], "the viewer stopped getting frames when the publisher was replaced"
    assert feeds["stats_after_swap"]["publishers"] == 2 and feeds["stats_after_swap"]["viewers"] == 2
    assert feeds["delete_replaced_pub"] == 404


def test_delete_ends_sessions_cleanly(feeds: dict) -> None:
    assert feeds["delete_b"] == 200 and feeds["delete_b_again"] == 404
    assert feeds["delete_pub_bad_token"] == 401
    assert feeds["stats_after_b"]["viewers"] == 1
    assert feeds["delete_pub"] == 200
    assert feeds["listing_after"] == {"streams": []}
    assert feeds["a_ended"], "the remaining viewer's track did not end when the publisher left"
    assert feeds["whep_after_end"] == 404
    assert feeds["republish"] == 201 and feeds["delete_pub2"] == 200
    state = feeds["republished_state"]["state"]
    assert state["caption"] == "HELLO" and len(state["emoji"]) == 2, "a new publish lost the stream's settings"
    assert feeds["health"] == 200
    log = feeds["log"]
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]


def test_latency_whip_to_whep(feeds: dict) -> None:
    lat = sorted(feeds["latency_ms"])
    assert len(lat) >= 20, f"only {len(lat)} frames matched by index"
    p50 = lat[len(lat) // 2]
    p95 = lat[min(len(lat) - 1, int(len(lat) * 0.95))]
    print(f"\n[feeds] WHIP -> WHEP latency at {W}x{H} (loopback, publisher encode .. viewer decode), "
          f"{len(lat)} frames: p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    assert p50 < 1500, "latency is not bounded"


def _families(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_follow_prometheus_conventions(feeds: dict) -> None:
    status, content_type, text = feeds["metrics_live"]
    assert status == 200 and content_type.startswith("text/plain")
    fams = _families(text)
    # Latency: one histogram in seconds, by stage; no gauges with a quantile label, nothing in milliseconds.
    hist = fams["stylizer_stage_seconds"]
    assert hist.type == "histogram"
    by_stage: dict[str, dict] = {}
    for sample in hist.samples:
        by_stage.setdefault(sample.labels["stage"], {}).setdefault(sample.name, []).append(sample)
    assert set(by_stage) == {"wait", "convert", "network", "overlay", "age"}
    for stage in ("network", "age", "wait"):
        buckets = by_stage[stage]["stylizer_stage_seconds_bucket"]
        counts = [b.value for b in buckets]
        assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf", stage  # cumulative
        count = by_stage[stage]["stylizer_stage_seconds_count"][0].value
        total = by_stage[stage]["stylizer_stage_seconds_sum"][0].value
        assert count == counts[-1] > 20, stage
        if stage != "wait":  # one stream: its calls hardly wait
            # Seconds, not milliseconds: a stylized 640x360 frame takes a few ms to a few hundred ms here.
            assert 0.001 < total / count < 2.0, (stage, total / count)
    assert not any(s.labels.get("quantile") for f in fams.values() for s in f.samples)
    assert not any(name.endswith("_ms") for name in fams)
    # Frames: counters by direction; rates come from rate().
    frames = fams["stylizer_frames"]
    assert frames.type == "counter"
    got = {(s.labels["direction"], s.labels["kind"]): s.value for s in frames.samples if s.name.endswith("_total")}
    assert got["in", "stream"] > 20 and got["out", "stream"] > 20
    assert "stylizer_fps" not in fams and "stylizer_unit_fps" not in fams
    # No churning ids in labels: only these label names, and their values come from small fixed sets.
    labels = {k for f in fams.values() for s in f.samples for k in s.labels}
    assert labels <= {"kind", "what", "stage", "le", "direction"}, labels
    # One process collector, and no copies of what it reports.
    assert sum(1 for name in fams if name == "process_resident_memory_bytes") == 1
    assert "stylizer_memory_rss_bytes" not in fams and "stylizer_open_fds" not in fams
    assert fams["stylizer_budget_seconds"].samples[0].value == 0.15
    for name, fam in fams.items():
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), name
    # After every stream ended, the counters have not gone back.
    end = _families(feeds["metrics_end"])
    later = {(s.labels["direction"], s.labels["kind"]): s.value
             for s in end["stylizer_frames"].samples if s.name.endswith("_total")}
    assert later["in", "stream"] >= got["in", "stream"] and later["out", "stream"] >= got["out", "stream"]
    assert end["stylizer_stage_seconds"].samples[-1].value >= hist.samples[-1].value

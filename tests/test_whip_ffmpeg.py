"""A WHIP client nobody here wrote: FFmpeg's WHIP muxer (through PyAV) publishes, an aiortc WHEP viewer watches.

FFmpeg 8.1 as PyAV bundles it does DTLS with GnuTLS, and makes itself a secp224r1 (P-224) certificate; aiortc's
OpenSSL 4 has no P-224 (RFC 8827 asks for P-256), so the handshake fails with `illegal_parameter` unless FFmpeg is
given a P-256 certificate (`cert_file`/`key_file`), as docs/obs.md tells users. This test publishes that way.
"""

from __future__ import annotations

import asyncio
import datetime
import statistics
import threading
import time
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest

from engines.loader import load_backend
from realtime.live import ice
from tests.conftest import run_server
from tests.whipclient import WhepViewer, base_scene, numbered

pytestmark = pytest.mark.integration

W, H, FPS = 640, 360, 25
TOKEN = "ffmpeg-whip-token"
BELOW_STRIP = 48  # rows under the frame-index strip (as in test_feeds)


def p256_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate and key (PEM): what RFC 8827 asks a WebRTC endpoint for."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "whip-publisher")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "whip.crt", folder / "whip.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def publish(url: str, options: dict[str, str], seconds: float, stop: threading.Event, result: dict) -> None:
    """H.264 baseline 640x360 at 25 fps, paced in real time, through FFmpeg's WHIP muxer."""
    scene = base_scene(W, H)
    try:
        with av.open(url, "w", format="whip", options=options) as out:
            stream = out.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            stream.options = {"profile": "baseline", "tune": "zerolatency", "preset": "veryfast", "g": str(FPS),
                              "bf": "0"}
            t0 = time.monotonic()
            for i in range(int(FPS * seconds)):
                if stop.is_set():
                    break
                frame = av.VideoFrame.from_ndarray(numbered(scene, i), format="rgb24")
                frame.pts = i
                out.mux(stream.encode(frame))
                result["sent"] = i + 1
                time.sleep(max(0.0, t0 + (i + 1) / FPS - time.monotonic()))
            out.mux(stream.encode(None))
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001  (reported by the test, with FFmpeg's last log line)
        result["error"] = f"{type(exc).__name__}: {exc}"


async def watch(base: str, frames_wanted: int) -> dict:
    ice.enable_loopback()
    out: dict = {}
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        viewer = None
        while viewer is None:  # the stream is live once FFmpeg's offer is answered
            v = WhepViewer(keep=12)
            status, _ = await v.play(http, f"{base}/whep/ff", TOKEN)
            if status == 201:
                viewer = v
            else:
                await v.close()
                assert status == 404 and time.monotonic() < deadline, f"WHEP answered {status}"
                await asyncio.sleep(0.3)
        await viewer.wait_frames(frames_wanted, timeout=40)
        out["frames"] = list(viewer.frames)
        async with http.get(f"{base}/api/streams/ff/stats", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            out["stats"] = await r.json()
        await viewer.close()
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def test_ffmpeg_whip_muxer_publishes_and_a_whep_viewer_sees_it_stylized(tmp_path: Path) -> None:
    cert, key = p256_certificate(tmp_path)
    with run_server("--token", TOKEN) as srv:
        stop, result = threading.Event(), {}
        options = {"authorization": TOKEN, "cert_file": str(cert), "key_file": str(key)}
        publisher = threading.Thread(target=publish, args=(f"{srv.url}/whip/ff", options, 12.0, stop, result))
        publisher.start()
        try:
            seen = asyncio.run(watch(srv.url, 30))
        finally:
            stop.set()
            publisher.join(30)
        log = srv.log()
    assert "error" not in result, f"{result['error']}\n{log}"
    assert result.get("ok"), result
    assert "stream ff published" in log and "DTLS handshake failed" not in log, log
    stats = seen["stats"]
    assert stats["frames_in"] >= 30 and stats["inferences"] >= 30, stats
    # Stylized by the model: the viewer's frames are nearer the model's output for the published picture than
    # the picture itself (below the frame-index strip, which differs frame to frame).
    backend = load_backend()
    scene = numbered(base_scene(W, H), 0)
    expected = backend.stylize(scene, backend.contract.weights_vector(None))
    frames = [f for f in seen["frames"] if f.shape == scene.shape]
    assert len(frames) >= 5, [f.shape for f in seen["frames"]]
    to_model = statistics.median(psnr(f[BELOW_STRIP:], expected[BELOW_STRIP:]) for f in frames)
    to_input = statistics.median(psnr(f[BELOW_STRIP:], scene[BELOW_STRIP:]) for f in frames)
    print(f"\n[ffmpeg whip] PSNR of WHEP frames to the model's output {to_model:.1f} dB, to the input {to_input:.1f} dB")
    assert to_model > to_input + 4 and to_model > 18

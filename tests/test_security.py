"""Security: the default bind, the token on every control and signaling route, the Host/Origin checks,
static files that cannot escape web/, oversized bodies, TLS, and tokens that never reach the log."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.loader import load_backend
from realtime.live.auth import refusal
from realtime.live.limits import Limits
from realtime.live.security import POLICY_KEY, Policy, Redactor, SecurityError, TextFormatter, check_bind, ssl_context
from realtime.live.server import create_app
from tests.apphelpers import free_port, loop_thread, raw_request, serve_app
from tests.conftest import REPO

TOKEN = "tok-3f9a1c-very-secret"

# Every control and signaling route, with a body that is fine apart from the auth.
PROTECTED = [
    ("POST", "/offer", {"json": {"sdp": "v=0\r\n", "type": "offer"}}),
    ("POST", "/whip", {"data": b"v=0\r\n", "headers": {"Content-Type": "application/sdp"}}),
    ("POST", "/whip/cam", {"data": b"v=0\r\n", "headers": {"Content-Type": "application/sdp"}}),
    ("DELETE", "/whip/cam/abc", {}),
    ("POST", "/whep/cam", {"data": b"v=0\r\n", "headers": {"Content-Type": "application/sdp"}}),
    ("DELETE", "/whep/cam/abc", {}),
    ("GET", "/api/streams", {}),
    ("GET", "/api/streams/cam", {}),
    ("POST", "/api/streams/cam", {"json": {"strength": 0.5}}),
    ("GET", "/api/streams/cam/stats", {}),
    ("GET", "/metrics", {}),
    ("GET", "/debug/resources", {}),
]


@pytest.fixture(scope="module")
def backend():
    return load_backend()


# ---------------------------------------------------------------- pure parts


@pytest.mark.unit
def test_non_loopback_bind_needs_a_token_or_insecure() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert check_bind(host, None, False) == []
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.org"):
        with pytest.raises(SecurityError, match="--token") as info:
            check_bind(host, None, False)
        assert "--insecure" in str(info.value)
        assert check_bind(host, TOKEN, False) == []
        warnings = check_bind(host, None, True)
        assert warnings and "anyone" in warnings[0]


@pytest.mark.unit
def test_tls_options_are_checked(tmp_path: Path) -> None:
    assert ssl_context(None, None) is None
    with pytest.raises(SecurityError, match="together"):
        ssl_context(str(tmp_path / "c.pem"), None)
    with pytest.raises(SecurityError, match="cannot load"):
        ssl_context(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


@pytest.mark.unit
def test_log_lines_never_carry_the_token() -> None:
    fmt = Redactor(TextFormatter(), [TOKEN])
    for text in (f"got {TOKEN}", "GET /view/live?token=abc123&overlay=1", "header Authorization: Bearer xyz.789",
                 f"bad bearer {TOKEN}x"):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", (text,), None)
        record.session = "abcd1234"
        line = fmt.format(record)
        assert TOKEN not in line and "abc123" not in line and "xyz.789" not in line, line
        assert "session=abcd1234" in line


@pytest.mark.unit
def test_tokenless_server_lets_only_loopback_clients_in(backend) -> None:
    app = create_app(backend)

    def request_from(ip: str):
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (ip, 5555) if name == "peername" else default
        return make_mocked_request("POST", "/offer", app=app, transport=transport)

    assert refusal(request_from("127.0.0.1"), None) is None
    assert refusal(request_from("::1"), None) is None
    refused = refusal(request_from("10.1.2.3"), None)
    assert refused is not None and refused.status == 403
    app[POLICY_KEY].insecure = True  # --insecure: anyone
    assert refusal(request_from("10.1.2.3"), None) is None


# ---------------------------------------------------------------- in-process server


async def _statuses(app, checks) -> list:
    async with serve_app(app) as base, aiohttp.ClientSession() as http:
        return [await check(http, base) for check in checks]


@pytest.mark.integration
def test_token_is_checked_on_every_control_and_signaling_route(backend) -> None:
    app = create_app(backend, token=TOKEN, limits=Limits(offer_rate=1000, offer_burst=1000))

    async def run() -> list[tuple[str, int, int, int]]:
        out = []
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            for method, path, kw in PROTECTED:
                codes = []
                for auth in (None, "Bearer wrong", f"Bearer {TOKEN}"):
                    headers = dict(kw.get("headers", {}))
                    if auth:
                        headers["Authorization"] = auth
                    async with http.request(method, base + path, **{**kw, "headers": headers}) as r:
                        codes.append(r.status)
                        if r.status in (401, 403):
                            assert (await r.json())["error"]
                out.append((f"{method} {path}", *codes))
        return out

    for route, none, wrong, right in asyncio.run(run()):
        assert none == 401 and wrong == 401, (route, none, wrong)
        assert right not in (401, 403), (route, right)


@pytest.mark.integration
def test_host_and_origin_checks(backend) -> None:
    """No token: only loopback Host names (DNS rebinding); cross-origin writes refused; CORS only when asked."""

    async def run() -> dict:
        out: dict = {}
        app = create_app(backend)
        async with serve_app(app) as base:
            port = base.rsplit(":", 1)[1]
            out["evil_host"] = await raw_request(base, "GET / HTTP/1.1", {"Host": f"evil.example:{port}"})
            out["evil_host_offer"] = await raw_request(base, "POST /offer HTTP/1.1", {"Host": f"evil.example:{port}",
                                                       "Content-Type": "application/json"}, b"{}")
            out["localhost"] = (await raw_request(base, "GET /healthz HTTP/1.1", {"Host": f"localhost:{port}"}))[0]
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/offer", json={}, headers={"Origin": "http://evil.example"}) as r:
                    out["cross_post"] = (r.status, (await r.json())["error"])
                async with http.post(f"{base}/offer", json={}, headers={"Origin": base}) as r:
                    out["same_origin_post"] = r.status
                async with http.options(f"{base}/whip/x", headers={"Origin": "http://evil.example",
                                                                    "Access-Control-Request-Method": "POST"}) as r:
                    out["cross_preflight"] = r.status
                async with http.get(f"{base}/api/styles", headers={"Origin": "http://evil.example"}) as r:
                    out["cross_get"] = (r.status, r.headers.get("Access-Control-Allow-Origin"))
        app = create_app(backend, policy=Policy(cors_origins=("http://studio.example",)))
        async with serve_app(app) as base, aiohttp.ClientSession() as http:
            async with http.options(f"{base}/whip/x", headers={"Origin": "http://studio.example",
                                                                "Access-Control-Request-Method": "POST",
                                                                "Access-Control-Request-Headers": "authorization"}) as r:
                out["granted_preflight"] = (r.status, r.headers.get("Access-Control-Allow-Origin"),
                                            r.headers.get("Access-Control-Allow-Headers", ""))
            async with http.post(f"{base}/offer", json={}, headers={"Origin": "http://studio.example"}) as r:
                out["granted_post"] = (r.status, r.headers.get("Access-Control-Allow-Origin"))
            async with http.post(f"{base}/offer", json={}, headers={"Origin": "http://other.example"}) as r:
                out["other_post"] = r.status
        return out

    out = asyncio.run(run())
    assert out["evil_host"][0] == 403 and b"host" in out["evil_host"][1]
    assert out["evil_host_offer"][0] == 403
    assert out["localhost"] == 200
    assert out["cross_post"][0] == 403 and "cross-origin" in out["cross_post"][1]
    assert out["same_origin_post"] == 400  # reached the handler (the body is not an offer)
    assert out["cross_preflight"] == 403
    assert out["cross_get"] == (200, None)  # served, but a browser may not read it
    status, allow_origin, allow_headers = out["granted_preflight"]
    assert status == 204 and allow_origin == "http://studio.example" and "Authorization" in allow_headers
    assert out["granted_post"] == (400, "http://studio.example")
    assert out["other_post"] == 403


TRAVERSALS = [
    "/static/../pyproject.toml", "/static/%2e%2e/pyproject.toml", "/static/..%2fpyproject.toml",
    "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static/....//....//etc/passwd", "/static//etc/passwd",
    "/static/%2fetc%2fpasswd", "/static/..\\pyproject.toml", "/static/%5c..%5cpyproject.toml",
    "/static/app.js/../../pyproject.toml", "/static/%252e%252e/pyproject.toml", "/static/\x00/../pyproject.toml",
    "/thumbs/..%2f..%2fmodel.json.jpg", "/thumbs/../../engines/models/default/model.json",
    "/view/..%2f..%2fpyproject.toml", "/static/../realtime/server.py", "/static/../../../../../../etc/passwd",
]
OUTSIDE = (b"[build-system]", b"root:x:0:0", b"create_app", b"stylizer-student")


def _escaped(body: bytes) -> bool:
    return any(marker in body for marker in OUTSIDE)


@pytest.mark.integration
def test_static_files_cannot_escape_web(backend) -> None:
    async def run() -> list[tuple[str, int, bool]]:
        out = []
        async with serve_app(create_app(backend)) as base:
            status, body = await raw_request(base, "GET /static/app.js HTTP/1.1")
            out.append(("/static/app.js", status, b"stylizer" in body.lower()))
            for path in TRAVERSALS:
                status, body = await raw_request(base, f"GET {path} HTTP/1.1")
                out.append((path, status, _escaped(body)))
        return out

    results = asyncio.run(run())
    assert results[0][1] == 200 and results[0][2]
    for path, status, escaped in results[1:]:
        assert not escaped, f"{path} served a file outside web/"
        assert status in (0, 400, 403, 404), (path, status)


@pytest.mark.integration
def test_static_path_fuzz_never_leaves_web(backend) -> None:
    """Property: whatever the path under /static/, nothing outside web/ comes back."""
    segment = st.sampled_from(["..", ".", "%2e%2e", "%2E%2e", "..%2f", "%2f", "%5c", "\\", "app.js", "etc",
                               "passwd", "pyproject.toml", "realtime", "server.py", "", "%00", "%252e%252e"])
    with loop_thread() as lt:
        app = create_app(backend)
        cm = serve_app(app)
        base = lt.run(cm.__aenter__())
        try:
            @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
            @given(st.lists(segment, min_size=1, max_size=8))
            def probe(parts: list[str]) -> None:
                path = "/static/" + "/".join(parts)
                status, body = lt.run(raw_request(base, f"GET {path} HTTP/1.1"))
                assert not _escaped(body), path
                assert status != 500, path

            probe()
        finally:
            lt.run(cm.__aexit__(None, None, None))


@pytest.mark.integration
def test_oversized_bodies_get_413(backend) -> None:
    big = b"v=0\r\n" + b"a=x-padding:" + b"y" * 70_000 + b"\r\n"

    async def run() -> dict:
        out = {}
        async with serve_app(create_app(backend, limits=Limits(offer_rate=1000, offer_burst=1000))) as base:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/offer", json={"sdp": big.decode(), "type": "offer"}) as r:
                    out["offer"] = (r.status, await r.json())
                async with http.post(f"{base}/whip/cam", data=big,
                                     headers={"Content-Type": "application/sdp"}) as r:
                    out["whip"] = (r.status, await r.json())
                async with http.post(f"{base}/api/streams/cam", data=b"{" + b" " * 5000 + b"}",
                                     headers={"Content-Type": "application/json"}) as r:
                    out["api"] = (r.status, await r.json())

            async def chunks():
                for _ in range(20):
                    yield b"x" * 8192

            json_type, sdp_type = {"Content-Type": "application/json"}, {"Content-Type": "application/sdp"}
            async with aiohttp.ClientSession() as http, http.post(f"{base}/offer", data=chunks(),
                                                                   headers=json_type) as r:
                out["offer_chunked"] = (r.status, await r.json(content_type=None))
            async with aiohttp.ClientSession() as http, http.post(f"{base}/whep/cam", data=chunks(),
                                                                   headers=sdp_type) as r:
                out["whep_chunked"] = (r.status, await r.json(content_type=None))
            async with aiohttp.ClientSession() as http, http.get(f"{base}/healthz") as r:
                out["health"] = r.status
        return out

    out = asyncio.run(run())
    for key in ("offer", "whip", "api", "offer_chunked", "whep_chunked"):
        status, body = out[key]
        assert status == 413, (key, status, body)
        assert "too large" in body["error"], (key, body)
    assert out["health"] == 200


# ---------------------------------------------------------------- a real `realtime serve` with TLS and a token


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _listening(port: int) -> list[str]:
    """Local addresses listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.append(addr)
    return found


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(folder)
    port = free_port()
    log_path = folder / "server.log"
    cmd = [sys.executable, "-m", "realtime.cli", "serve", "--port", str(port), "--token", TOKEN,
           "--cert", str(cert), "--key", str(key)]
    with open(log_path, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    ctx = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                with urllib.request.urlopen(f"{url}/healthz", context=ctx, timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.25)
        yield {"url": url, "port": port, "ctx": ctx, "proc": proc, "log": log_path}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


@pytest.mark.integration
def test_default_bind_is_loopback_only(tls_server) -> None:
    addrs = _listening(tls_server["port"])
    assert addrs and all(a == "0100007F" for a in addrs), addrs  # 127.0.0.1, nothing else


@pytest.mark.integration
def test_tls_serves_https_and_plain_http_fails(tls_server) -> None:
    with urllib.request.urlopen(f"{tls_server['url']}/healthz", context=tls_server["ctx"], timeout=5) as r:
        assert r.status == 200
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_server['port']}/healthz", timeout=5).read()


@pytest.mark.integration
def test_token_never_reaches_the_log(tls_server) -> None:
    url, ctx = tls_server["url"], tls_server["ctx"]

    def call(path: str, headers: dict[str, str], data: bytes | None = None) -> int:
        req = urllib.request.Request(url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert call("/api/streams", {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert call("/api/streams", {"Authorization": f"Bearer {TOKEN}x"}) == 401
    assert call(f"/view/live?token={TOKEN}", {}) == 200
    assert call(f"/api/streams?token={TOKEN}", {}) == 401
    assert call("/whip/cam", {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/sdp"},
                b"v=0\r\no=- 0 0 IN IP4 " + TOKEN.encode() + b"\r\n") == 400  # logged as refused
    assert call("/metrics", {"Authorization": f"Bearer {TOKEN}"}) == 200
    time.sleep(0.5)
    text = tls_server["log"].read_text(errors="replace")
    assert "refused" in text  # the bad offer was logged ...
    assert TOKEN not in text  # ... without the token


@pytest.mark.integration
def test_serve_refuses_a_network_bind_without_token() -> None:
    proc = subprocess.run([sys.executable, "-m", "realtime.cli", "serve", "--host", "0.0.0.0", "--port",
                           str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
                          env={k: v for k, v in os.environ.items() if k != "STYLIZER_TOKEN"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--token" in lines[0] and "--insecure" in lines[0], proc.stderr

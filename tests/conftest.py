"""Shared fixtures: a free port and a real `realtime serve` subprocess."""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = float(os.environ.get("STYLIZER_SERVER_TIMEOUT", "120"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A running `python -m realtime.cli serve`; its stdout+stderr go to a log file."""

    def __init__(self, proc: subprocess.Popen, url: str, log_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.log_path = log_path

    def log(self, tail_chars: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail_chars:]

    def debug_sections(self) -> list[tuple[str, str]]:
        return [("server log", self.log())]


@contextlib.contextmanager
def run_server(*extra_args: str, timeout_s: float = SERVER_START_TIMEOUT_S,
               port: int | None = None, module: str = "realtime.cli") -> Iterator[ServerProcess]:
    """Start the server (on a free port unless given) with loopback ICE; wait until /healthz answers; always stop it.

    `module` runs it: "tests.notorch" serves as an install without torch would."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir = Path(tempfile.mkdtemp(prefix="stylizer-server-"))
    log_path = log_dir / "server.log"
    # Each server gets its own style library (never the user's) and short fits, unless a test names its own.
    own = [] if "--styles" in extra_args else ["--styles", str(log_dir / "styles")]
    own += [] if "--fit-steps" in extra_args else ["--fit-steps", "3"]
    cmd = [sys.executable, "-m", module, "serve", "--port", str(port), "--loopback-ice", *own, *extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, url, log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode} before answering:\n{server.log()}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer {url}/healthz within {timeout_s:.0f} s:\n{server.log()}")
            time.sleep(0.25)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A `realtime serve --loopback-ice` subprocess for this test module (see ServerProcess.log())."""
    # STYLIZER_SERVER_ARGS: extra `serve` options for the module servers, for A/B measurements
    # (e.g. STYLIZER_SERVER_ARGS="--threads 1" pytest tests/test_browser.py -s).
    with run_server(*shlex.split(os.environ.get("STYLIZER_SERVER_ARGS", ""))) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_url(server: ServerProcess) -> str:
    """Base URL of the module's server, e.g. "http://127.0.0.1:PORT"."""
    return server.url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach what fixtures can tell (server log, browser console) to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            sections = getattr(value, "debug_sections", None)
            if callable(sections):
                for title, text in sections():
                    report.sections.append((title, text))


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where the browser tests write their screenshots: a temporary folder, so a test run never changes a
    tracked file; docs/ (the pictures docs/web_app.md and docs/obs.md show) with STYLIZER_SCREENSHOTS=docs."""
    if os.environ.get("STYLIZER_SCREENSHOTS") == "docs":
        return REPO / "docs"
    return tmp_path


# Every test carries one of these (pyproject.toml's markers say what each means); `-m unit` etc. pick them.
CATEGORIES = ("unit", "train", "integration", "browser", "gpu")


def _refuse_uncategorised(items) -> None:
    """A test module whose tests do not all carry a category marker is an error, not a silently unselected test."""
    missing: dict[str, list[str]] = {}
    for item in items:
        if not any(item.get_closest_marker(name) for name in CATEGORIES):
            missing.setdefault(item.nodeid.split("::")[0], []).append(item.name)
    if missing:
        lines = [f"  {module}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                 for module, names in sorted(missing.items())]
        raise pytest.UsageError("test modules without a category marker (give the module a `pytestmark = "
                                f"pytest.mark.unit` or another of {', '.join(CATEGORIES)}):\n" + "\n".join(lines))


def pytest_collection_modifyitems(config, items):
    """Refuse tests without a category; skip `gpu` tests where there is no CUDA GPU (CI, laptops):
    scripts/gpu_check.sh runs them on one."""
    _refuse_uncategorised(items)
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    try:
        import torch

        have_cuda = torch.cuda.is_available()
    except Exception:  # no torch, or a broken CUDA install
        have_cuda = False
    if not have_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu_check.sh on one)")
        for item in gpu_items:
            item.add_marker(skip)

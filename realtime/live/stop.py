"""Stopping `realtime stylize` cleanly on SIGTERM or Ctrl-C, and failing cleanly when the disk is full.

SIGTERM and the first SIGINT only ask the frame loops to stop after the frame in hand: the encoder
is flushed, the file is finished and renamed into place, and the command exits 0 with a note. A second
SIGINT interrupts at once (KeyboardInterrupt: no output, exit 130).

SIGXFSZ is ignored, so a write past a file-size limit (RLIMIT_FSIZE, `ulimit -f`) fails with EFBIG
like a full disk fails with ENOSPC, instead of killing the process: both become a one-line error.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_stop = threading.Event()
_signal_name = ""

DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def requested() -> bool:
    """True once SIGTERM or SIGINT asked the command to stop."""
    return _stop.is_set()


def reason() -> str:
    return _signal_name


def request(name: str = "request") -> None:
    """Ask the loops to stop (what the signal handlers do)."""
    global _signal_name
    _signal_name = _signal_name or name
    _stop.set()


def reset() -> None:
    global _signal_name
    _signal_name = ""
    _stop.clear()


def is_disk_full(exc: BaseException) -> bool:
    """A write failed for lack of space (ENOSPC), a file-size limit (EFBIG) or a quota (EDQUOT)."""
    return getattr(exc, "errno", None) in DISK_FULL


@contextmanager
def install_stop_signals() -> Iterator[None]:
    """SIGTERM/SIGINT -> request(); SIGXFSZ ignored. Restores the old handlers afterwards (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()
    old: dict[int, Any] = {}

    def on_term(signum: int, frame: Any) -> None:
        request(signal.Signals(signum).name)

    def on_int(signum: int, frame: Any) -> None:
        if _stop.is_set():
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        request("SIGINT")

    for sig, handler in ((signal.SIGTERM, on_term), (signal.SIGINT, on_int), (signal.SIGXFSZ, signal.SIG_IGN)):
        try:
            old[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # pragma: no cover - unusual platforms
            pass
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)

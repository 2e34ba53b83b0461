"""Progress of a long file job on stderr: a live bar on a terminal, plain lines in logs, nothing when quiet.

A `\\r`-redrawn bar written into a log file or a CI console is one enormous line of repeats, so when
stderr is not a terminal a line is written every `EVERY_S` seconds instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any

EVERY_S = 5.0


class Progress:
    """Counts frames of `total` (None: unknown); `note()` prints a line without breaking the bar."""

    def __init__(self, total: int | None, label: str, *, quiet: bool = False, every_s: float = EVERY_S) -> None:
        self.total, self.label, self.quiet, self.every_s = total, label, quiet, every_s
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self.bar: Any = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="frame", desc=label, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if not self.quiet and now - self.last >= self.every_s:
            self.last = now
            print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float | None = None) -> str:
        """`clip.mp4: 40/109 frames (37%), 8.1 fps, about 9 s left`."""
        elapsed = max(1e-6, (now or time.monotonic()) - self.t0)
        fps = self.done / elapsed
        text = f"{self.label}: {self.done}"
        if self.total:
            text += f"/{self.total} frames ({100 * self.done // self.total}%)"
        else:
            text += " frames"
        text += f", {fps:.1f} fps"
        if self.total and fps > 0 and self.done < self.total:
            text += f", about {(self.total - self.done) / fps:.0f} s left"
        return text

    def note(self, message: str) -> None:
        """A message for the user (not progress): shown even when quiet."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

"""A token bucket: how many control messages a session may send."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

RATE_PER_S = 20.0   # sustained; the web app sends at most 10 per second
BURST = 40


@dataclass
class TokenBucket:
    rate: float = RATE_PER_S
    burst: float = BURST
    tokens: float = BURST
    stamp: float = field(default_factory=time.monotonic)

    def allow(self, now: float | None = None) -> bool:
        """Take one token if there is one."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

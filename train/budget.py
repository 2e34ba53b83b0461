"""Fitting a training run into a wall-clock budget (a lent GPU of unknown speed, for a fixed number of minutes).

Both `python -m train teacher` and `python -m train distill` take `time_budget_min`: after a few timed steps the
run sets its total step count from its own speed, and scales its step-counted schedule by the same factor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TimeBudget:
    """Fits a run into a wall-clock budget from its own measured speed (`time_budget_min` of both configs)."""

    seconds: float
    start_step: int
    probe: int = 20  # steps timed before fitting; the first few (cuDNN autotune, worker start) are skipped
    skip: int = 5
    seconds_per_step: float = 0.0
    _t_begin: float = field(default_factory=time.time)
    _t_skip: float = 0.0
    _done: bool = False

    def fit(self, step: int) -> int | None:
        """Called at the top of each step; once, returns the total step count that ends inside the budget."""
        n = step - self.start_step
        if self._done:
            return None
        if n == self.skip + 1:
            self._t_skip = time.time()
        if n < self.skip + self.probe + 1:
            return None
        self._done = True
        now = time.time()
        self.seconds_per_step = (now - self._t_skip) / self.probe
        # 8% kept back: checkpoints, previews and a data pipeline that slows as the run goes on (the first
        # H200 runs, fitted with 3% kept back, went 20% slower than their probe and were cut 40 steps short)
        left = self.seconds * 0.92 - (now - self._t_begin)
        return max(step, step + int(left / self.seconds_per_step))


def fit_schedule(cfg: object, fit: int, counts: tuple[str, ...] = (), intervals: tuple[str, ...] = ()) -> None:
    """Set `cfg.steps` to `fit` and scale the config's other step counts by the same factor: `counts` (a
    start step, which may be 0) and `intervals` (a ramp or a save interval, at least 1 step)."""
    # count * fit / steps, multiplied first: through a float scale 50000 * (237 / 100000) came out 118.50000000000001
    # and rounded up where the exact 118.5 rounds to even.
    old = cfg.steps
    cfg.steps = fit
    for name in counts:
        setattr(cfg, name, round(getattr(cfg, name) * fit / old))
    for name in intervals:
        setattr(cfg, name, max(1, round(getattr(cfg, name) * fit / old)))

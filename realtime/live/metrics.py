"""/metrics (Prometheus text format, prometheus-client) and the resource census behind /debug/resources.

Names and units follow Prometheus conventions: seconds and bytes, `_total` counters, histograms for latency,
and no per-session or per-stream labels (their ids churn; /api/streams and the data channel's stats have them).

    stylizer_peers{kind}                       gauge: web sessions, WHIP publishers, WHEP viewers now
    stylizer_peers_limit                       gauge: --max-peers
    stylizer_busy_refusals_total               counter: offers answered 503 (server full)
    stylizer_rate_limited_total{what}          counter: offers / API requests / control messages refused for rate
    stylizer_stage_seconds{stage}              histogram: each frame's time per stage, every session and stream:
                                               wait (for the worker), convert, network, overlay, and age (a
                                               frame's whole time in the server: decoded -> stylized)
    stylizer_frames_total{direction,kind}      counter: frames decoded (in) and stylized (out), by session/stream
    stylizer_frames_dropped_total              counter: frames never stylized (a newer one replaced them)
    stylizer_budget_seconds                    gauge: the per-frame budget (--budget-ms)
    stylizer_budget_misses_total               counter: frames whose age went over it
    stylizer_frame_errors_total, stylizer_overlay_errors_total
    stylizer_worker_restarts_total, stylizer_worker_queue, stylizer_worker_busy_seconds_total
    stylizer_worker_batches_total, stylizer_worker_batched_frames_total   counters: batched calls on a GPU, frames
    stylizer_threads, stylizer_asyncio_tasks   gauges (memory, fds and CPU: the process_* collector)
    process_*                                  prometheus-client's process collector: cpu, memory, fds

Queries (docs/protocol.md has more):
    histogram_quantile(0.95, rate(stylizer_stage_seconds_bucket{stage="age"}[1m]))   p95 time in the server
    sum by (direction) (rate(stylizer_frames_total[1m]))                              frames per second
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("wait", "convert", "network", "overlay", "age")
# Upper bounds in seconds: 1 ms steps where the CPU stages sit (a few to 60 ms at 640x360), up to the
# 150 ms default budget and past it, so both a stage's cost and a frame's age over budget can be read.
BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)


class StageHistograms:
    """Cumulative per-stage histograms of one server, fed by every pipeline and the inference worker.

    Thread-safe: the inference thread and the event loop both observe."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS_S) -> None:
        self.buckets = buckets
        self._lock = threading.Lock()
        self._counts = {stage: [0] * (len(buckets) + 1) for stage in STAGES}  # the last: above every bound
        self._sums = dict.fromkeys(STAGES, 0.0)

    def observe(self, stage: str, seconds: float) -> None:
        counts = self._counts.get(stage)
        if counts is None or not math.isfinite(seconds):
            return
        i = bisect.bisect_left(self.buckets, seconds)  # le semantics: a value equal to a bound is in it
        with self._lock:
            counts[i] += 1
            self._sums[stage] += seconds

    def family(self) -> HistogramMetricFamily:
        h = HistogramMetricFamily("stylizer_stage_seconds", "time of each frame in one stage, all sessions and "
                                  "streams (age: decoded to stylized)", labels=["stage"], unit="seconds")
        with self._lock:
            snapshot = {stage: (list(c), self._sums[stage]) for stage, c in self._counts.items()}
        for stage, (counts, total) in snapshot.items():
            cumulative, running = [], 0
            for bound, n in zip((*map(repr, self.buckets), "+Inf"), counts):
                running += n
                cumulative.append((bound, running))
            h.add_metric([stage], cumulative, total)
        return h


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def resources(collect: bool = True) -> dict[str, Any]:
    """What the process holds now: for leak checks after churn (tasks, threads, fds, memory)."""
    if collect:
        gc.collect()
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:  # no running loop
        tasks = 0
    names: dict[str, int] = {}
    pooled = 0
    for t in threading.enumerate():
        base = t.name.rstrip("0123456789_-() ") or t.name
        names[base] = names.get(base, 0) + 1
        # asyncio's default executor (aiortc encodes there) keeps up to min(32, cores + 4) idle threads:
        # a bounded pool, not a leak, so it is counted apart.
        pooled += t.name.startswith("asyncio_")
    total = threading.active_count()
    return {"rss_bytes": rss_bytes(), "open_fds": open_fds(), "threads": total, "threads_pooled": pooled,
            "threads_other": total - pooled, "thread_names": dict(sorted(names.items())), "asyncio_tasks": tasks}


class ServerCollector(Collector):
    """Turns `snapshot()` (a dict the server builds) into Prometheus metric families."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        g = GaugeMetricFamily("stylizer_peers", "WebRTC peers now, by kind", labels=["kind"])
        for kind, n in s["peers"].items():
            g.add_metric([kind], n)
        yield g
        yield GaugeMetricFamily("stylizer_peers_limit", "most peers at once (--max-peers)", value=s["peers_limit"])
        yield CounterMetricFamily("stylizer_busy_refusals", "offers answered 503: server full", value=s["busy"])
        c = CounterMetricFamily("stylizer_rate_limited", "requests or messages refused for rate", labels=["what"])
        for what, n in s["rate_limited"].items():
            c.add_metric([what], n)
        yield c

        yield s["histograms"].family()

        frames = CounterMetricFamily("stylizer_frames", "frames decoded (in) and stylized (out)",
                                     labels=["direction", "kind"])
        for (direction, kind), n in sorted(s["frames"].items()):
            frames.add_metric([direction, kind], n)
        yield frames

        totals = s["totals"]
        yield CounterMetricFamily("stylizer_frames_dropped", "frames never stylized: a newer one replaced them",
                                  value=totals["dropped"])
        yield GaugeMetricFamily("stylizer_budget_seconds", "per-frame budget in the server (--budget-ms)",
                                value=s["budget_ms"] / 1000, unit="seconds")
        yield CounterMetricFamily("stylizer_budget_misses", "frames whose time in the server went over budget",
                                  value=totals["budget_misses"])
        yield CounterMetricFamily("stylizer_frame_errors", "frames that failed to stylize (sent unchanged)",
                                  value=totals["errors"])
        yield CounterMetricFamily("stylizer_overlay_errors", "overlay draws that failed (frame sent without)",
                                  value=totals["overlay_errors"])

        w = s["worker"]
        yield CounterMetricFamily("stylizer_worker_restarts", "inference workers replaced (hung or died)",
                                  value=w["restarts"])
        yield GaugeMetricFamily("stylizer_worker_queue", "calls waiting for the inference worker", value=w["queued"])
        yield CounterMetricFamily("stylizer_worker_busy_seconds", "time the inference worker spent in calls",
                                  value=w["busy_s"], unit="seconds")
        yield CounterMetricFamily("stylizer_worker_batches", "batched calls (frames of two or more sessions at once)",
                                  value=w["batches"])
        yield CounterMetricFamily("stylizer_worker_batched_frames", "frames stylized in batched calls",
                                  value=w["batched_frames"])

        r = resources(collect=False)  # memory and fds are the process collector's (process_*), not repeated
        yield GaugeMetricFamily("stylizer_threads", "threads", value=r["threads"])
        yield GaugeMetricFamily("stylizer_asyncio_tasks", "asyncio tasks", value=r["asyncio_tasks"])


def registry(snapshot: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A registry of its own per server (tests run several in one process)."""
    reg = CollectorRegistry()
    reg.register(ServerCollector(snapshot))
    ProcessCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)

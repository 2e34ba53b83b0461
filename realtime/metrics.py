"""/metrics (Prometheus text format, prometheus-client) and the resource census behind /debug/resources.

Metrics (all from one snapshot of the server, taken at scrape time):
    stylizer_peers{kind}                      web sessions, WHIP publishers, WHEP viewers now
    stylizer_peers_limit                      --max-peers
    stylizer_busy_refusals_total              offers answered 503 (server full)
    stylizer_rate_limited_total{what}         offers / API requests / control messages refused for rate
    stylizer_stage_latency_ms{stage,quantile} p50 and p95 over recent frames of every session and stream:
                                              wait (for the worker), convert, network, overlay, and age
                                              (a frame's whole time in the server: decoded -> stylized)
    stylizer_fps{direction}                   frames per second in (decoded) and out (stylized), all together
    stylizer_unit_fps{unit,kind,direction}    the same per session / stream
    stylizer_frames_dropped_total             frames never stylized (a newer one replaced them)
    stylizer_budget_ms                        the per-frame budget (--budget-ms)
    stylizer_budget_misses_total[{unit}]      frames whose age went over it
    stylizer_frame_errors_total, stylizer_overlay_errors_total
    stylizer_worker_restarts_total, stylizer_worker_queue, stylizer_worker_busy_seconds_total
    stylizer_memory_rss_bytes, stylizer_threads, stylizer_asyncio_tasks, stylizer_open_fds
    process_* (prometheus-client's process collector: cpu, memory, fds)
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STAGES = ("wait", "convert", "network", "overlay", "age")


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

        g = GaugeMetricFamily("stylizer_stage_latency_ms", "per-stage time of recent frames, all sessions",
                              labels=["stage", "quantile"])
        for stage in STAGES:
            samples = s["stages"].get(stage) or []
            for q in (0.5, 0.95):
                g.add_metric([stage, str(q)], float(np.percentile(samples, q * 100)) if samples else 0.0)
        yield g

        units = s["units"]
        fps = GaugeMetricFamily("stylizer_fps", "frames per second, all sessions and streams", labels=["direction"])
        fps.add_metric(["in"], sum(u["fps_in"] for u in units))
        fps.add_metric(["out"], sum(u["fps_out"] for u in units))
        yield fps
        per = GaugeMetricFamily("stylizer_unit_fps", "frames per second of one session or stream",
                                labels=["unit", "kind", "direction"])
        misses = CounterMetricFamily("stylizer_unit_budget_misses", "frames over budget, per session or stream",
                                     labels=["unit", "kind"])
        for u in units:
            per.add_metric([u["id"], u["kind"], "in"], u["fps_in"])
            per.add_metric([u["id"], u["kind"], "out"], u["fps_out"])
            misses.add_metric([u["id"], u["kind"]], u["budget_misses"])
        yield per
        yield misses

        totals = s["totals"]
        yield CounterMetricFamily("stylizer_frames_dropped", "frames never stylized: a newer one replaced them",
                                  value=totals["dropped"])
        yield GaugeMetricFamily("stylizer_budget_ms", "per-frame budget in the server (--budget-ms)",
                                value=s["budget_ms"])
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
                                  value=w["busy_s"])

        r = resources(collect=False)
        yield GaugeMetricFamily("stylizer_memory_rss_bytes", "resident memory", value=r["rss_bytes"])
        yield GaugeMetricFamily("stylizer_threads", "threads", value=r["threads"])
        yield GaugeMetricFamily("stylizer_asyncio_tasks", "asyncio tasks", value=r["asyncio_tasks"])
        yield GaugeMetricFamily("stylizer_open_fds", "open file descriptors", value=r["open_fds"])


def registry(snapshot: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A registry of its own per server (tests run several in one process)."""
    reg = CollectorRegistry()
    reg.register(ServerCollector(snapshot))
    ProcessCollector(registry=reg)
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)

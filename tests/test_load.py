"""Load and churn, short versions of scripts/load_test.py (the full figures are in RELIABILITY.md).

- Load: more peers than this machine can serve at full rate, each in its own process: every peer's frame
  rate drops about equally (fairness as a ratio), latency does not grow over the run (frames are dropped,
  never queued), and the server's memory stays flat.
- Churn: 50 connect/disconnect cycles (web sessions, WHIP + WHEP, and clients killed with SIGKILL): no
  tasks, threads, file descriptors or peer connections left behind, RSS grows < 50 MB. (At 50 cycles the
  inference worker's idle thread still held the last session's peer connection: issue 27.)
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

_spec = importlib.util.spec_from_file_location("load_test", REPO / "scripts" / "load_test.py")
load_test = importlib.util.module_from_spec(_spec)
sys.modules["load_test"] = load_test
_spec.loader.exec_module(load_test)


def test_overload_degrades_fairly_and_stays_bounded() -> None:
    row = load_test.load_row(4, seconds=14, warmup=4, size="320x180", strength=0.3, server_args=[])
    print("\n" + load_test.HEADER + "\n" + row.line())
    assert all(r.get("ok") for r in row.results), row.results
    fps = row.fps
    assert min(fps) > 0, fps
    # Fair: the slowest peer gets at least 60% of the fastest one's frame rate.
    assert row.fairness >= 0.6, fps
    # Bounded: latency in the second half is not above the first half's (queuing would make it climb).
    early = statistics.median(r["early_p50_ms"] for r in row.results)
    late = statistics.median(r["late_p50_ms"] for r in row.results)
    assert late < 1.5 * early + 100, (early, late)
    assert max(row.p95) < 2000, row.p95
    assert row.rss_end - row.rss_start < load_test.RSS_GROWTH_LIMIT_MB, (row.rss_start, row.rss_end)


def test_churn_leaves_nothing_behind() -> None:
    with load_test.server("--idle-timeout", "3", "--connect-timeout", "10", "--offer-rate", "100") as srv:
        result = asyncio.run(load_test.churn(srv.url, 50, "160x96", warmup_cycles=4))
        log = srv.log(500000)
    print(f"\nchurn: {result['cycles']} cycles in {result['seconds']:.0f} s: {result['kinds']}\n"
          + load_test.churn_table(result))
    assert not result["failures"], result["failures"]
    assert sum(result["kinds"].values()) == 50 and min(result["kinds"].values()) == 12, result["kinds"]
    base, end = result["base"], result["end"]
    assert end["sessions"] == end["streams"] == end["peers"] == 0, end
    assert end["peer_connections_alive"] == 0, end
    for key in load_test.LEAK_KEYS:
        assert end[key] <= base[key], (key, base[key], end[key])
    assert end["threads_pooled"] <= load_test.POOL_MAX, end["thread_names"]
    assert (end["rss_bytes"] - base["rss_bytes"]) / 2**20 < load_test.RSS_GROWTH_LIMIT_MB
    assert "Traceback" not in log, log[-4000:]

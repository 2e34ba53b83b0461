"""The inference worker: one supervised thread that runs the network for every session, in turn.

Why one thread: the back-end already uses every core inside a call, and is not thread-safe.
Why fair: each session (or stream) has at most one call waiting (its track's recv() waits for the
result before it asks again), and calls are taken first come, first served, so under overload every
session gets the same share of the worker: their frame rates drop together. Each call picks the
session's newest frame when it *starts* (LatestFrameReader.fresher), so waiting in line never makes
a frame stale.

Why supervised: a call that never returns (a wedged back-end) or a worker thread that dies would
stall every session. A watchdog thread replaces such a worker: the stuck call's caller gets
WorkerFailed (its session sends that frame through unstylized, counts an error and goes on), and
queued calls run on the new thread. A stuck thread cannot be killed in Python; it is abandoned
(a daemon thread) and, if it ever returns, exits without touching anything.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("realtime.worker")

WATCH_INTERVAL_S = 0.25


class WorkerFailed(RuntimeError):
    """The worker running a call hung past its timeout or died; the call was abandoned."""


class InferenceWorker(concurrent.futures.Executor):
    """A one-thread executor with a FIFO of calls, a watchdog, and counters for /metrics."""

    def __init__(self, name: str = "inference", hang_timeout_s: float = 30.0) -> None:
        self.name = name
        self.hang_timeout_s = hang_timeout_s
        self._cv = threading.Condition()
        self._jobs: deque[tuple[concurrent.futures.Future, Callable[..., Any], tuple, dict, float]] = deque()
        self._shutdown = False
        self._gen = 0
        self._thread: threading.Thread | None = None
        self._current: tuple[int, concurrent.futures.Future, float] | None = None  # (generation, future, start)
        self.restarts = 0
        self.calls = 0
        self.failures = 0           # calls that raised
        self.busy_s = 0.0           # time spent in calls (for utilisation)
        self.wait_ms: deque[float] = deque(maxlen=240)  # time calls waited in line
        self.observer: Callable[[str, float], None] | None = None  # told each wait, in seconds (/metrics)
        self._start()
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True)
        self._watchdog.start()

    # ------------------------------------------------------------ the Executor interface

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._jobs.append((future, fn, args, kwargs, time.monotonic()))
            self._cv.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False, timeout_s: float = 5.0) -> None:
        with self._cv:
            self._shutdown = True
            if cancel_futures:
                while self._jobs:
                    self._jobs.popleft()[0].cancel()
            self._cv.notify_all()
            thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    # ------------------------------------------------------------ state

    @property
    def queued(self) -> int:
        return len(self._jobs)

    @property
    def alive(self) -> bool:
        t = self._thread
        return t is not None and t.is_alive()

    def running_for_s(self) -> float:
        cur = self._current
        return time.monotonic() - cur[2] if cur is not None else 0.0

    # ------------------------------------------------------------ the thread

    def _start(self) -> None:
        self._gen += 1
        gen = self._gen
        self._thread = threading.Thread(target=self._loop, args=(gen,), name=f"{self.name}-{gen}", daemon=True)
        self._thread.start()

    def _loop(self, gen: int) -> None:
        while True:
            # Drop the last call before waiting for the next: these locals (the call's bound method, its
            # arguments and result) kept the last session's track, and through it its peer connection,
            # alive for as long as the worker idled (the churn's one leaked RTCPeerConnection).
            future = fn = args = kwargs = result = None  # type: ignore[assignment]
            with self._cv:
                while not self._jobs and not self._shutdown and gen == self._gen:
                    self._cv.wait()
                if gen != self._gen or (self._shutdown and not self._jobs):
                    return
                future, fn, args, kwargs, queued = self._jobs.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                start = time.monotonic()
                self.wait_ms.append((start - queued) * 1e3)
                if self.observer is not None:
                    self.observer("wait", start - queued)
                self._current = (gen, future, start)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001  (the caller decides what a failed call means)
                self.failures += 1
                self._settle(gen, future, exc=exc)
            except BaseException as exc:  # noqa: BLE001  (SystemExit and the like: the watchdog replaces this thread)
                self._settle(gen, future, exc=WorkerFailed(f"the inference worker died ({type(exc).__name__})"))
                log.error("inference worker %s ended by %s: %s", threading.current_thread().name,
                          type(exc).__name__, exc)
                with self._cv:
                    self._current = None
                return
            else:
                self._settle(gen, future, result=result)
            finally:
                with self._cv:
                    if self._current is not None and self._current[1] is future:
                        self._current = None
                    self.calls += 1
                    self.busy_s += time.monotonic() - start
            if gen != self._gen:
                return  # replaced while this call hung: leave the line to the new thread

    @staticmethod
    def _settle(gen: int, future: concurrent.futures.Future, result: Any = None, exc: BaseException | None = None) -> None:
        if future.done():
            return  # abandoned by the watchdog
        try:
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_INTERVAL_S)
            with self._cv:
                if self._shutdown:
                    return
                cur = self._current
                dead = self._thread is not None and not self._thread.is_alive()
                hung = cur is not None and cur[0] == self._gen and time.monotonic() - cur[2] > self.hang_timeout_s
                if not (dead or hung):
                    continue
                why = "died" if dead else f"hung for over {self.hang_timeout_s:g} s"
                if cur is not None and cur[0] == self._gen:
                    self._settle(cur[0], cur[1], exc=WorkerFailed(f"the inference worker {why}"))
                    self._current = None
                self.restarts += 1
                self._start()
                self._cv.notify_all()
            log.error("inference worker %s; started a new one (restart %d)", why, self.restarts)

"""The inference worker: one supervised thread that runs the network for every session, in turn.

Why one thread: the back-end already uses every core inside a call, and is not thread-safe.
Why fair: each session (or stream) has at most one call waiting (its track's recv() waits for the
result before it asks again), and calls are taken first come, first served, so under overload every
session gets the same share of the worker: their frame rates drop together. Each call picks the
session's newest frame when it *starts* (LatestFrameReader.fresher), so waiting in line never makes
a frame stale.

Why batched (on a GPU): a device back-end runs N frames in one call for little more than one costs (batch 8 at
1280x720: 2550 network frames/s on an H200, against about 1640 at batch 1). A call that says it may be batched
(a `batch_key` attribute and a `run_batch` method, as track.FrameJob has) takes along the calls queued behind it
with the same key, up to `max_batch`, in their order; each still picks its session's newest frame when the
batch starts, and a session still has at most one call in line, so the rules above hold. CPU back-ends run
slower per frame in batches (BENCHMARKS.md), so they are not batched.

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
MAX_BATCH = 16  # frames in one batched call on a device back-end (the goal: 16 sessions at 720p30)


class WorkerFailed(RuntimeError):
    """The worker running a call hung past its timeout or died; the call was abandoned."""


class InferenceWorker(concurrent.futures.Executor):
    """A one-thread executor with a FIFO of calls, a watchdog, and counters for /metrics."""

    def __init__(self, name: str = "inference", hang_timeout_s: float = 30.0, max_batch: int = 1) -> None:
        self.name = name
        self.hang_timeout_s = hang_timeout_s
        self.max_batch = max(1, max_batch)
        self._cv = threading.Condition()
        self._jobs: deque[tuple[concurrent.futures.Future, Callable[..., Any], tuple, dict, float]] = deque()
        self._shutdown = False
        self._gen = 0
        self._thread: threading.Thread | None = None
        # (generation, the futures of the call or batch running, start)
        self._current: tuple[int, list[concurrent.futures.Future], float] | None = None
        self.restarts = 0
        self.calls = 0
        self.batches = 0            # batched calls (two or more frames in one)
        self.batched_frames = 0     # the frames those calls ran
        self.batch_sizes: deque[int] = deque(maxlen=240)
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
            # (Loop variables too: a `for` that unpacked a call would keep the last one.)
            group = taken = future = fn = args = kwargs = outcomes = fut = value = None  # type: ignore[assignment]
            with self._cv:
                while not self._jobs and not self._shutdown and gen == self._gen:
                    self._cv.wait()
                if gen != self._gen or (self._shutdown and not self._jobs):
                    return
                future, fn, args, kwargs, queued = self._jobs.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                start = time.monotonic()
                group = [(future, fn)]
                self._current = (gen, [future], start)  # from here the watchdog can settle what was taken
            try:
                with self._cv:
                    taken = self._take_batch(fn)
                    group += [(f, call) for f, call, _ in taken]
                    self._current = (gen, [f for f, _ in group], start)
                for waited in [queued] + [q for _, _, q in taken]:
                    self.wait_ms.append((start - waited) * 1e3)
                    if self.observer is not None:
                        self.observer("wait", start - waited)
                if len(group) == 1:
                    outcomes = [_outcome(fn, *args, **kwargs)]
                else:
                    self.batches += 1
                    self.batched_frames += len(group)
                    self.batch_sizes.append(len(group))
                    outcomes = fn.run_batch([f for _, f in group])
                for fut, (ok, value) in zip([f for f, _ in group], outcomes, strict=True):
                    if ok:
                        self._settle(gen, fut, result=value)
                    else:
                        self.failures += 1
                        self._settle(gen, fut, exc=value)
            except Exception as exc:  # noqa: BLE001  (a batch that failed as a whole: each caller decides)
                self.failures += len(group)
                for fut in [f for f, _ in group]:
                    self._settle(gen, fut, exc=exc)
            except BaseException as exc:  # noqa: BLE001  (SystemExit and the like: the watchdog replaces this thread)
                for fut in [f for f, _ in group]:
                    self._settle(gen, fut, exc=WorkerFailed(f"the inference worker died ({type(exc).__name__})"))
                log.error("inference worker %s ended by %s: %s", threading.current_thread().name,
                          type(exc).__name__, exc)
                with self._cv:
                    self._current = None
                return
            finally:
                with self._cv:
                    if self._current is not None and self._current[1][0] is future:
                        self._current = None
                    self.calls += len(group)
                    self.busy_s += time.monotonic() - start
            if gen != self._gen:
                return  # replaced while this call hung: leave the line to the new thread

    def _take_batch(self, first: Any) -> list[tuple[concurrent.futures.Future, Any, float]]:
        """Under the lock: the queued calls that may run in one batch with `first` (same batch key, no
        arguments), in their order, up to max_batch in all; they leave the queue. (future, call, queued)."""
        if self.max_batch < 2:
            return []
        key = getattr(first, "batch_key", None)
        if key is None:
            return []
        taken: list[tuple[concurrent.futures.Future, Any, float]] = []
        for job in list(self._jobs):
            if len(taken) + 1 >= self.max_batch:
                break
            fut, fn, args, kwargs, queued = job
            if args or kwargs or getattr(fn, "batch_key", None) != key:
                continue
            self._jobs.remove(job)
            if fut.set_running_or_notify_cancel():
                taken.append((fut, fn, queued))
        return taken

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
                    for fut in cur[1]:
                        self._settle(cur[0], fut, exc=WorkerFailed(f"the inference worker {why}"))
                    self._current = None
                self.restarts += 1
                self._start()
                self._cv.notify_all()
            log.error("inference worker %s; started a new one (restart %d)", why, self.restarts)


def _outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
    """(True, result) or (False, the exception): one call's outcome, as run_batch reports each of its calls'."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001  (the caller decides what a failed call means)
        return False, exc

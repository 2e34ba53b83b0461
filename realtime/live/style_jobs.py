"""Style fits off the event loop: one at a time, in a separate process, with a queue and cancel.

A fit is seconds of full CPU work in torch; in the server's own process it would take the GIL and
the cores from live sessions. So each fit runs in a spawned child process on one thread (so a session
keeps the other core), at FitConfig.nice (0: at 19 a busy CPU starved it, docs/styles.md), and stops
stepping WALL_BUDGET_S after it started; it reports progress through a pipe and sends back the style's
FiLM row, which the parent stores (engines/style_library.py) and hands to the back-end as one new bank.
Cancel terminates the child; nothing is written until a fit has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from engines.backends import Backend
from engines.style_library import StyleError, StyleLibrary

log = logging.getLogger("realtime.styles")

QUEUE_LIMIT = 4  # jobs waiting besides the running one; more is a 429
WALL_BUDGET_S = 55.0  # a running fit stops stepping this long after it started (process start and load included)


def _child(conn: Connection, model: str, pictures: list[np.ndarray], weights: list[float], cfg: Any) -> None:
    """The fit, in its own process: progress messages, then ("done", vector, summary) or ("error", text)."""
    from engines.style_fit import FitConfig

    with contextlib.suppress(OSError):
        os.nice((cfg or FitConfig()).nice)
    try:
        from engines.artifact import load_artifact
        from engines.style_fit import fit_style

        art = load_artifact(model)
        res = fit_style(art, pictures, weights, cfg=cfg,
                        progress=lambda f, m: conn.send(("progress", float(f), m)))
        conn.send(("done", res.vector, res.summary()))
    except Exception as exc:  # noqa: BLE001 - every failure goes back as one line; the server goes on
        conn.send(("error", f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)))
    finally:
        conn.close()


@dataclass
class FitJob:
    id: str
    name: str
    pictures: list[np.ndarray]
    weights: list[float]
    sources: list[str]
    refit: bool = False  # a stored style getting a vector for this model
    state: str = "queued"  # queued, running, done, failed, cancelled
    progress: float = 0.0
    message: str = "waiting for the fit before it"
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    seconds: float | None = None
    process: Any = field(default=None, repr=False)

    def eta_s(self) -> float | None:
        if self.state != "running" or self.started is None or self.progress < 0.08:
            return None
        elapsed = time.monotonic() - self.started
        return round(max(0.0, elapsed / self.progress - elapsed), 1)

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "state": self.state, "progress": round(self.progress, 3),
                "eta_s": self.eta_s(), "message": self.message, "error": self.error, "seconds": self.seconds,
                "refit": self.refit}


class FitQueue:
    """Fits for one server: its back-end's model, its style library."""

    def __init__(self, backend: Backend, library: StyleLibrary, cfg: Any = None) -> None:
        self.backend = backend
        self.library = library
        self.cfg = cfg
        self.sha = backend.artifact.weights_sha256
        self.jobs: dict[str, FitJob] = {}
        self._queue: asyncio.Queue[FitJob] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._task: asyncio.Task | None = None
        self.reload()

    # ------------------------------------------------------------ state

    def reload(self) -> None:
        """Give the back-end every style fitted for its model, as one new bank."""
        self.backend.set_styles(self.library.vectors(self.sha))

    def pending_names(self) -> list[str]:
        return [j.name for j in self.jobs.values() if j.state in ("queued", "running") and not j.refit]

    def taken(self) -> tuple[str, ...]:
        return (*self.backend.styles.names[: self.backend.styles.num_trained], *self.pending_names())

    def waiting(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state == "queued")

    # ------------------------------------------------------------ submit, cancel

    def submit(self, name: str, pictures: list[np.ndarray], weights: list[float], sources: list[str],
               refit: bool = False) -> FitJob:
        if self.waiting() >= QUEUE_LIMIT:
            raise StyleError(f"{QUEUE_LIMIT} fits are already waiting; try again when one is done")
        job = FitJob(id=str(next(self._ids)), name=name, pictures=pictures, weights=weights, sources=sources,
                     refit=refit)
        self.jobs[job.id] = job
        # Finished jobs are kept for a while so a page can read the outcome; the oldest go first.
        for old in [j for j in self.jobs.values() if j.finished is not None][:-20]:
            self.jobs.pop(old.id, None)
        self._queue.put_nowait(job)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return job

    def refit_stale(self) -> list[FitJob]:
        """Queue a refit of every stored style without a vector for this model (its references are kept)."""
        jobs = []
        for name in self.library.stale(self.sha):
            style = self.library.get(name)
            jobs.append(self.submit(name, style.pictures(), style.weights, [], refit=True))
        return jobs

    def cancel(self, job_id: str) -> FitJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.state == "queued":
            job.state, job.message, job.finished = "cancelled", "cancelled", time.monotonic()
        elif job.state == "running":
            job.state, job.message = "cancelled", "cancelled"
            if job.process is not None:
                job.process.terminate()
        return job

    async def close(self) -> None:
        for job in self.jobs.values():
            if job.state in ("queued", "running"):
                self.cancel(job.id)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------------ the runner

    async def _run(self) -> None:
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job.state != "queued":
                continue
            try:
                await self._fit(job)
            except Exception as exc:  # a bug here must not stop the queue or the server
                log.exception("style fit %s failed", job.name)
                job.state, job.error = "failed", f"internal error: {exc}"
            job.finished = time.monotonic()
            job.pictures = []  # the stored references are on disk now (or not wanted)

    async def _fit(self, job: FitJob) -> None:
        from dataclasses import replace

        from engines.style_fit import FitConfig

        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=False)
        # The wall budget counts from now, as the page's clock does; time.monotonic() is system-wide on Linux.
        cfg = replace(self.cfg or FitConfig(), deadline=time.monotonic() + WALL_BUDGET_S)
        proc = ctx.Process(target=_child, name=f"style-fit-{job.name}", daemon=True,
                           args=(child, str(self.backend.artifact.path), job.pictures, job.weights, cfg))
        job.state, job.started, job.message, job.process = "running", time.monotonic(), "starting", proc
        proc.start()
        child.close()
        result: tuple | None = None
        try:
            while True:
                if parent.poll():
                    try:
                        msg = parent.recv()
                    except EOFError:
                        break
                    if msg[0] == "progress":
                        job.progress, job.message = min(0.99, msg[1]), msg[2]
                    else:
                        result = msg
                        break
                elif not proc.is_alive() and not parent.poll():
                    break
                else:
                    await asyncio.sleep(0.1)
        finally:
            parent.close()
            await asyncio.get_running_loop().run_in_executor(None, proc.join, 5.0)
            if proc.is_alive():
                proc.kill()
            job.process = None
        job.seconds = round(time.monotonic() - job.started, 1)
        if job.state == "cancelled":
            return
        if result is None or result[0] != "done":
            job.state = "failed"
            job.error = result[1] if result is not None else f"the fit process ended unexpectedly (exit {proc.exitcode})"
            job.message = job.error
            return
        _, vector, summary = result
        try:
            if job.refit:
                await asyncio.to_thread(self.library.add_vector, job.name, self.sha, vector, summary)
            else:
                await asyncio.to_thread(self.library.create, job.name, job.pictures, job.weights, job.sources,
                                        self.sha, vector, summary, self.backend.styles.names[
                                            : self.backend.styles.num_trained])
        except StyleError as exc:
            job.state, job.error, job.message = "failed", str(exc), str(exc)
            return
        self.reload()
        job.state, job.progress, job.message = "done", 1.0, f"ready in {job.seconds:.0f} s"
        log.info("style %s fitted in %.1f s", job.name, job.seconds)

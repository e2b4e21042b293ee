"""The ``local`` executor with ``--jobs N`` (N > 1): up to N points at a time, each in its own
child of this process, as the one-at-a-time executor runs them.

For suites whose figures are not times (the quality suite's accuracies and bits per byte):
on a small CPU, small models use a second thread badly, so two one-thread points side by
side finish more work per hour than one two-thread point (docs/suites.md: about twice for
the quality suite's byte LMs on 2 cores, about even for its larger duplication models).

Each job waits for its child in a thread of this process (the child does the work; the
thread only blocks in :func:`suites.harness.executors.local.measure_job`). Jobs beyond the free
slots wait here, and the one whose family has the most work left starts first (as the Ray
executor orders them), so the longest family is not the one left running alone at the end.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from suites.harness.executors.jobs import Finished, Job
from suites.harness.executors.local import measure_job
from suites.harness.isolation import kill_child


class SideBySideExecutor:
    """Up to ``jobs`` points measured at once on this machine."""

    # finished() only waits for children started by submit(); it measures nothing itself.
    blocking = False

    def __init__(self, hardware: str, jobs: int) -> None:
        if jobs < 2:
            raise ValueError(f"jobs={jobs!r}: side by side means 2 or more (1: LocalExecutor)")
        self._hardware, self._jobs = hardware, jobs
        self._waiting: list[Job] = []
        self._running: dict[int, Any] = {}  # ident -> its child once started (None before)
        self._cancelled: set[int] = set()
        self._results: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self._lock = threading.Lock()

    def hardware(self) -> list[str]:
        return [self._hardware]

    def has_room(self) -> bool:
        # Jobs queue here; the dispatcher keeps one per family in flight.
        return True

    def submit(self, job: Job) -> None:
        self._waiting.append(job)
        self._start_waiting()

    def finished(self, wait_s: float) -> list[Finished]:
        done: list[Finished] = []
        try:
            first = self._results.get(timeout=wait_s)
        except queue.Empty:
            return done
        for ident, result in [first, *self._drain()]:
            with self._lock:
                self._running.pop(ident, None)
                cancelled = ident in self._cancelled
                self._cancelled.discard(ident)
            if not cancelled:
                done.append(Finished(ident=ident, result=result, hardware=self._hardware))
        self._start_waiting()
        return done

    def cancel(self, ident: int) -> None:
        self._waiting = [job for job in self._waiting if job.ident != ident]
        with self._lock:
            if ident in self._running:
                self._cancelled.add(ident)
                child = self._running[ident]
                if child is not None:
                    kill_child(child)

    def busy(self) -> int:
        with self._lock:
            return len(self._running) - len(self._cancelled)

    def close(self) -> None:
        self._waiting.clear()
        for ident in list(self._running):
            self.cancel(ident)

    def _drain(self) -> list[tuple[int, dict[str, Any]]]:
        more = []
        while True:
            try:
                more.append(self._results.get_nowait())
            except queue.Empty:
                return more

    def _start_waiting(self) -> None:
        self._waiting.sort(key=lambda job: (-job.family_work, job.ident))
        while self._waiting and len(self._running) < self._jobs:
            job = self._waiting.pop(0)
            with self._lock:
                self._running[job.ident] = None
            # A daemon thread: an interrupted sweep exits without waiting for it (its
            # child, a daemon process, is killed at exit).
            threading.Thread(target=self._measure, args=(job,), daemon=True).start()

    def _measure(self, job: Job) -> None:
        def started(child: Any) -> None:
            with self._lock:
                if job.ident in self._running:
                    self._running[job.ident] = child
                if job.ident in self._cancelled:
                    kill_child(child)

        try:
            result = measure_job(job, started)
        except BaseException as exc:  # the dispatcher must hear of every job
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "wall_s": 0.0}
        self._results.put((job.ident, result))

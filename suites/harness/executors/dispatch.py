"""The sweep loop over an executor: which point goes next, and what a result means.

A *family* is the points that differ only in length (``Point.family``). Its lengths run
in order, one at a time, shortest first: after one ends in ``oom`` or ``timeout`` the
longer ones are written as ``skipped`` without being tried. That holds with results
arriving out of order from many workers, because a family never has two points in flight.
Families run side by side, as many as the executor has room for; with ``local`` (room for
one) the order is exactly the sorted order of the points.

With ``per_hardware`` every point is measured once on each hardware kind the executor
has, and each (hardware, family) pair is its own family.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from suites.harness.executors.jobs import Executor, Job
from suites.harness.exits import Terminated
from suites.harness.points import Point
from suites.harness.progress import heartbeat

# Points that mean "longer will not fit either": later lengths of the family are skipped.
STOPPING_STATUSES = ("oom", "timeout")
# How often the progress bar's busy-worker count is refreshed while waiting.
REFRESH_S = 1.0

Record = Callable[[Point, str, dict[str, Any]], None]
Family = tuple[str | None, str]  # (hardware kind or None, Point.family())


@dataclass(frozen=True)
class _Entry:
    ident: int
    point: Point
    hardware: str | None  # the kind it must run on (per_hardware), else None: any


def measure_points(
    points: list[Point],
    executor: Executor,
    *,
    suite: str,
    done: set[str],
    record: Record,
    max_memory_gb: float | None,
    timeout_s: float | None,
    per_hardware: bool = False,
    progress: bool = True,
    log: Any = None,
) -> None:
    """Measure every point not yet done; ``record(point, key, result)`` is called once per
    point measured or skipped, in this process, as results arrive.

    A point is done when ``done`` (the run file's ok keys) has its key for one of the
    executor's hardware kinds (any of them; with ``per_hardware``, for that kind).
    ``timeout_s`` overrides every point's own timeout when given.
    """
    from tqdm import tqdm

    kinds = executor.hardware()
    targets: list[str | None] = list(kinds) if per_hardware else [None]
    entries = [
        _Entry(ident, point, target)
        for ident, (point, target) in enumerate(
            (point, target) for point in points for target in targets
        )
    ]
    todo = [
        entry
        for entry in entries
        if not any(entry.point.key(suite, kind) in done for kind in _kinds(entry, kinds))
    ]
    if not todo:
        _say(
            log,
            f"{suite}: nothing left to measure: all {len(entries)} points already have an ok "
            "row in this run's file (--fresh measures them again in a new file)",
        )
        return
    sweep = _Sweep(executor, suite, kinds, record, max_memory_gb, timeout_s)
    for entry in todo:
        sweep.queues.setdefault(_family(entry), deque()).append(entry)
    # A bar redraws itself in place, which only a terminal shows as one line; into a log
    # file it would write a frame per refresh, so there (and under --no-progress, which
    # turns the bar off, not the record of what was measured) each finished point is one
    # line.
    interactive = progress and _is_terminal(log)
    sweep.lines = None if interactive else log
    sweep.done, sweep.total = len(entries) - len(todo), len(entries)
    sweep.bar = tqdm(
        total=len(entries),
        initial=len(entries) - len(todo),
        desc=suite,
        unit="point",
        disable=not interactive,
        file=log,
        dynamic_ncols=True,
    )
    try:
        sweep.run()
    except KeyboardInterrupt as exc:
        sweep.interrupt("SIGTERM" if isinstance(exc, Terminated) else "KeyboardInterrupt")
        raise
    finally:
        sweep.bar.close()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _say(log: Any, text: str) -> None:
    if log is not None:
        print(text, file=log, flush=True)


class _Sweep:
    """The loop's state: queued points per family, running points, stopped families."""

    def __init__(
        self,
        executor: Executor,
        suite: str,
        kinds: list[str],
        record: Record,
        max_memory_gb: float | None,
        timeout_s: float | None,
    ) -> None:
        self.executor, self.suite, self.kinds, self.record = executor, suite, kinds, record
        self.max_memory_gb, self.timeout_s = max_memory_gb, timeout_s
        self.queues: dict[Family, deque[_Entry]] = {}
        self.running: dict[int, _Entry] = {}
        self.stopped: dict[Family, tuple[str, int, str]] = {}  # -> status, seq_len, hardware
        self.bar: Any = None
        self.lines: Any = None  # off a terminal: where each finished point gets a line
        self.done = self.total = 0  # points with a row, of all the sweep's points

    def run(self) -> None:
        while self.queues or self.running:
            self.submit_ready()
            if not self.running:
                continue
            for finished in self._wait():
                entry = self.running.pop(finished.ident)
                status = finished.result["status"]
                if status in STOPPING_STATUSES:
                    self.stopped.setdefault(
                        _family(entry), (status, entry.point.seq_len, finished.hardware)
                    )
                self.finish(entry, finished.hardware, finished.result)
            self.bar.set_postfix_str(f"{self.executor.busy()} busy", refresh=False)

    def _wait(self) -> list:
        """Finished points. An executor that measures in this call (``blocking``: local)
        shows the running point's elapsed time and progress meanwhile (suites.harness.progress)."""
        if self.executor.blocking and len(self.running) == 1 and not self.bar.disable:
            (entry,) = self.running.values()
            with heartbeat(self.bar, describe(entry.point), entry.point.options):
                return self.executor.finished(REFRESH_S)
        return self.executor.finished(REFRESH_S)

    def submit_ready(self) -> None:
        """Submit heads of idle families, lowest ident first, while the executor has room.

        A head to be skipped takes no room; it is written once no lower ident is still
        running, so with room for one the rows come in the points' sorted order.
        """
        while self._step():
            pass

    def _step(self) -> bool:
        """Write or submit one head; False when there is nothing to do now."""
        busy = {_family(entry) for entry in self.running.values()}
        lowest_running = min(self.running, default=None)
        idle = sorted(
            (family for family, queue in self.queues.items() if family not in busy),
            key=lambda f: self.queues[f][0].ident,
        )
        for family in idle:
            entry = self.queues[family][0]
            skip = _skip(entry.point, self.stopped.get(family))
            if skip is not None and lowest_running is not None and lowest_running < entry.ident:
                continue
            if skip is None and not self.executor.has_room():
                return False
            self.queues[family].popleft()
            if not self.queues[family]:
                del self.queues[family]
            if skip is not None:
                stopped = self.stopped.get(family)
                self.finish(entry, stopped[2] if stopped else entry.hardware or self.kinds[0], skip)
                return True
            self.executor.submit(
                Job(
                    ident=entry.ident,
                    point=entry.point,
                    timeout_s=self.timeout_s or entry.point.timeout_s,
                    max_memory_gb=self.max_memory_gb,
                    hardware=entry.hardware,
                    family_work=entry.point.cost()
                    + sum(queued.point.cost() for queued in self.queues.get(family, ())),
                )
            )
            self.running[entry.ident] = entry
            self.bar.set_postfix_str(
                f"{self.executor.busy()} busy | {describe(entry.point)}", refresh=True
            )
            return True
        return False

    def finish(self, entry: _Entry, hardware: str, result: dict[str, Any]) -> None:
        self.record(entry.point, entry.point.key(self.suite, hardware), result)
        self.bar.update(1)
        self.done += 1
        if self.lines is not None:
            wall = result.get("wall_s")
            took = f" in {wall:.1f} s" if isinstance(wall, int | float) and wall else ""
            status = result.get("status")
            # Why a point did not run or failed belongs beside it, not only in its row.
            why = _first_line(result.get("error")) if status != "ok" else ""
            _say(
                self.lines,
                f"{self.suite} [{self.done}/{self.total}] {describe(entry.point)}: "
                f"{status}{took}" + (f" ({why})" if why else ""),
            )

    def interrupt(self, reason: str = "KeyboardInterrupt") -> None:
        """Ctrl-C or SIGTERM: stop what runs and write it as an error, so a rerun measures
        it again."""
        for ident, entry in list(self.running.items()):
            self.executor.cancel(ident)
            self.finish(
                entry,
                entry.hardware or self.kinds[0],
                {"status": "error", "error": f"interrupted ({reason})"},
            )
        self.running.clear()


def _first_line(text: object, limit: int = 160) -> str:
    """The first line of an error or skip reason, cut to ``limit`` characters."""
    if not text:
        return ""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _family(entry: _Entry) -> Family:
    return entry.hardware, entry.point.family()


def _kinds(entry: _Entry, kinds: list[str]) -> list[str]:
    """The hardware kinds whose ok row makes this entry done."""
    return [entry.hardware] if entry.hardware is not None else kinds


def _skip(point: Point, stopped: tuple[str, int, str] | None) -> dict[str, Any] | None:
    """The skipped result for a point that is not to run, else None."""
    if point.options.get("skip_reason"):
        return {"status": "skipped", "error": point.options["skip_reason"], "wall_s": 0.0}
    if stopped is not None and stopped[1] < point.seq_len:
        return {
            "status": "skipped",
            "wall_s": 0.0,
            "error": f"a shorter length of this family ended in {stopped[0]} "
            f"(seq_len={stopped[1]})",
        }
    return None


def describe(point: Point) -> str:
    params = point.params
    return " ".join(
        [str(params.get("model")), str(params.get("phase")), f"L={params.get('seq_len')}"]
    )

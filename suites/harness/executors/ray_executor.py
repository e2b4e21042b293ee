"""The ``ray`` executor: every point is one Ray task that calls ``run_point`` on its node.

So a point still runs in its own child process there, with the same memory cap, timeout
and statuses as locally. Resources per task: one GPU for a CUDA point; on CPU, as many
CPUs as the point has threads (a point left at torch's default uses every core, so it
reserves as many CPUs as the smallest node has: a node of that size to itself).

Only the driver writes the run file; a task returns its result, and the fields of the
node that measured it: its environment (host, CPU, GPU, torch, load, ...), its hardware
kind (``node_hardware``, what the point's key is hashed with) and its Ray node id. The
git fields stay the driver's: its code is what every node runs (shipped as the job's
working directory).

A task first reports that it has started, then its result (a streaming generator), so a
point's time in Ray's queue never counts against its timeout. Failures:

- past its timeout: ``run_point`` on the node kills the child and returns ``timeout``; if
  the worker itself hangs, the driver cancels the task (``ray.cancel(force=True)``)
  ``GRACE_S`` after the timeout and writes ``timeout``;
- the worker or its node dies: ``error`` with Ray's reason; the sweep goes on;
- Ray's memory monitor kills the task: ``oom`` with Ray's reason.

Tasks are never retried (``max_retries=0``): a retry would measure a point twice and hide
the failure.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from suites.harness.env import REPO_ROOT, environment
from suites.harness.executors.jobs import Finished, Job
from suites.harness.isolation import describe, run_point
from suites.rows.names import hardware_name

# Row fields only rows measured through Ray have.
NODE_FIELDS = ("node_hardware", "ray_node_id")
# Environment fields that stay the driver's: the code every node runs is the driver's.
DRIVER_FIELDS = ("git_sha", "git_dirty")
# Beyond a point's timeout before the driver cancels its task: run_point on the node
# enforces the timeout itself, so this only catches a worker that hangs.
GRACE_S = 60.0
# Not shipped with the code to a cluster: results are written by the driver only.
SHIPPING_EXCLUDES = ["/.git", "/results", "/.venv*"]
INSTALL_HINT = (
    "--executor ray needs Ray, an optional extra: pip install "
    "'reformer-bench[ray]' (or pip install 'ray>=2.49')"
)


def require_ray() -> Any:
    """The ray module, or an error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    return ray


def node_fields(device: str) -> dict[str, Any]:
    """This node's environment fields (less the driver's), hardware kind and node id."""
    import ray

    env = environment(device)
    fields = {name: value for name, value in env.items() if name not in DRIVER_FIELDS}
    return fields | {
        "node_hardware": hardware_name(env, device),
        "ray_node_id": ray.get_runtime_context().get_node_id(),
    }


def measure_on_node(
    runner: str,
    params: dict[str, Any],
    options: dict[str, Any],
    timeout_s: float,
    max_memory_gb: float | None,
    device: str,
) -> Any:
    """The task: yields this node's fields as it starts, then the point's result with
    them (the node's load average taken when the point ended)."""
    node = node_fields(device)
    yield node
    result = run_point(runner, params, options, timeout_s=timeout_s, max_memory_gb=max_memory_gb)
    yield {**node, "load_avg_1m": os.getloadavg()[0], **result}


@dataclass
class _Task:
    job: Job
    stream: Any  # ray.ObjectRefGenerator
    node: dict[str, Any] = field(default_factory=dict)  # node_fields once started
    started_at: float | None = None  # time.monotonic() when the task reported its start


class RayExecutor:
    """Ray tasks on the cluster at ``address`` (see the module docstring)."""

    blocking = False  # finished() only waits on the cluster

    def __init__(
        self, *, device: str, address: str | None = None, log: Any = None, grace_s: float = GRACE_S
    ) -> None:
        self._ray = ray = require_ray()
        self.device, self.grace_s = device, grace_s
        self._log = log if log is not None else sys.stderr
        self._owns = not ray.is_initialized()
        if self._owns:
            # Nodes need not have this code (nor, on this machine, a worker started by
            # `ray start` from elsewhere): ship it as the job's working directory.
            ray.init(
                address=address,
                runtime_env={"working_dir": str(REPO_ROOT), "excludes": SHIPPING_EXCLUDES},
            )
        # On CUDA a fresh worker per task (max_calls=1): run_point's forkserver outlives a
        # task and would hand the next task's child this task's CUDA_VISIBLE_DEVICES.
        once = {"max_calls": 1} if device == "cuda" else {}
        self._measure = ray.remote(max_retries=0, num_returns="streaming", **once)(measure_on_node)
        self._nodes = self._probe_nodes()
        self._tasks: dict[int, _Task] = {}

    # -- Executor ----------------------------------------------------------------------

    def hardware(self) -> list[str]:
        return sorted({node["node_hardware"] for node in self._nodes.values()})

    def has_room(self) -> bool:
        return True  # Ray queues what does not fit; queued time is not timed

    def submit(self, job: Job) -> None:
        point = job.point
        stream = self._measure.options(**self._task_options(job)).remote(
            point.runner,
            point.params,
            point.runner_options(),
            job.timeout_s,
            job.max_memory_gb,
            self.device,
        )
        self._tasks[job.ident] = _Task(job, stream)

    def finished(self, wait_s: float) -> list[Finished]:
        ray = self._ray
        done = self._expire()
        if not self._tasks:
            return done
        streams = {task.stream: task for task in self._tasks.values()}
        ready, _ = ray.wait(list(streams), num_returns=1, timeout=self._wait_s(wait_s))
        if ready:
            ready, _ = ray.wait(list(streams), num_returns=len(streams), timeout=0)
        for stream in ready:
            done += self._advance(streams[stream])
        return done + self._expire()

    def cancel(self, ident: int) -> None:
        task = self._tasks.pop(ident, None)
        if task is not None:
            self._ray.cancel(task.stream, force=True)

    def busy(self) -> int:
        return sum(task.started_at is not None for task in self._tasks.values())

    def close(self) -> None:
        for ident in list(self._tasks):
            self.cancel(ident)
        if self._owns:
            self._ray.shutdown()

    # -- internals ---------------------------------------------------------------------

    def _probe_nodes(self) -> dict[str, dict[str, Any]]:
        """node id -> node_fields, for every live node that can run this device's points."""
        ray = self._ray
        gpu = self.device == "cuda"
        nodes = [
            node
            for node in ray.nodes()
            if node.get("Alive") and node["Resources"].get("GPU" if gpu else "CPU", 0) >= 1
        ]
        if not nodes:
            raise RuntimeError(
                f"the Ray cluster has no live node with a "
                f"{'GPU' if gpu else 'CPU'} for --device {self.device}"
            )
        probe = ray.remote(max_retries=0)(node_fields)
        refs = [
            probe.options(num_cpus=0, label_selector=_on_nodes([node["NodeID"]])).remote(
                self.device
            )
            for node in nodes
        ]
        facts = ray.get(refs)
        self._whole_node_cpus = int(min(node["Resources"]["CPU"] for node in nodes))
        described = ", ".join(sorted({f"{f['node_hardware']} ({f['host']})" for f in facts}))
        print(f"ray: {len(facts)} node(s) for {self.device} points: {described}", file=self._log)
        return {fields["ray_node_id"]: fields for fields in facts}

    def _task_options(self, job: Job) -> dict[str, Any]:
        threads = job.point.params.get("num_threads")
        options: dict[str, Any] = {
            "num_cpus": threads or (1 if self.device == "cuda" else self._whole_node_cpus)
        }
        if self.device == "cuda":
            options["num_gpus"] = 1
        if job.hardware is not None:
            options["label_selector"] = _on_nodes(
                [
                    node_id
                    for node_id, node in self._nodes.items()
                    if node["node_hardware"] == job.hardware
                ]
            )
        return options

    def _wait_s(self, wait_s: float) -> float:
        """Up to wait_s, but no later than the next cancel deadline."""
        now = time.monotonic()
        deadlines = [
            self._deadline(task) - now
            for task in self._tasks.values()
            if task.started_at is not None
        ]
        return max(0.0, min([wait_s, *deadlines]))

    def _deadline(self, task: _Task) -> float:
        assert task.started_at is not None
        return task.started_at + task.job.timeout_s + self.grace_s

    def _advance(self, task: _Task) -> list[Finished]:
        """Take the next item of a ready task: its start, or its end."""
        ray = self._ray
        try:
            item = ray.get(next(task.stream))
        except StopIteration:
            item = None
            failure = {"status": "error", "error": "the Ray task ended without a result"}
        except ray.exceptions.RayError as exc:
            item, failure = None, ray_failure(exc)
        if item is not None and task.started_at is None:
            task.node, task.started_at = item, time.monotonic()
            return []
        del self._tasks[task.job.ident]
        if item is None:
            wall_s = 0.0 if task.started_at is None else time.monotonic() - task.started_at
            item = {**task.node, **failure, "wall_s": wall_s}
        return [Finished(ident=task.job.ident, result=item, hardware=self._kind(task))]

    def _expire(self) -> list[Finished]:
        """Cancel started tasks past their deadline; each becomes a timeout."""
        now = time.monotonic()
        expired = [
            task
            for task in self._tasks.values()
            if task.started_at is not None and now > self._deadline(task)
        ]
        done = []
        for task in expired:
            self.cancel(task.job.ident)
            waited = now - (task.started_at or now)
            done.append(
                Finished(
                    ident=task.job.ident,
                    hardware=self._kind(task),
                    result={
                        **task.node,
                        "status": "timeout",
                        "wall_s": waited,
                        "error": f"no result within {task.job.timeout_s:g} s (+{self.grace_s:g} s "
                        "grace): the Ray task was cancelled (ray.cancel, force=True)",
                    },
                )
            )
        return done

    def _kind(self, task: _Task) -> str:
        """The hardware kind that ran (or was to run) a task."""
        return task.node.get("node_hardware") or task.job.hardware or self.hardware()[0]


def ray_failure(exc: BaseException) -> dict[str, Any]:
    """A task that Ray reports failed: killed by Ray's memory monitor is oom, anything
    else (a dead worker or node, a failed runtime environment) is error; Ray's reason is
    the row's error either way."""
    from ray.exceptions import OutOfMemoryError

    status = "oom" if isinstance(exc, OutOfMemoryError) else "error"
    return {"status": status, "error": describe(exc)}


def _on_nodes(node_ids: list[str]) -> dict[str, str]:
    """A label selector for any one of these nodes."""
    return {"ray.io/node-id": f"in({','.join(node_ids)})"}

"""The ``ray`` executor: points are measured by warm Ray workers, one actor per slot.

A warm worker is a Ray actor, a long-lived process that calls ``run_point`` for one point
after another, so a point still runs in its own child process there, with the same
memory cap, timeout and statuses as locally, but pays neither Ray's task start (~0.3 s)
nor a new worker's imports and forkserver: those are paid once per actor per sweep.
Resources per actor: one GPU for CUDA points (an actor keeps its GPU for life, so its
forkserver's CUDA_VISIBLE_DEVICES stays right); on CPU, as many CPUs as the point has
threads (a point left at torch's default uses every core, so it reserves as many CPUs as
the smallest node has: a node of that size to itself). Actors of one shape (resources,
hardware kind) are made as jobs need them, up to as many as the cluster's nodes hold; an
idle actor whose shape no waiting job needs is let go when another shape waits, so its
resources never block another's.

Jobs wait here, not in Ray's queue; when an actor is free it takes the waiting job whose
family has the most work left (``Job.family_work``), so the longest family starts first
and does not run alone at the end of the sweep.

Only the driver writes the run file; a worker returns its result, and the fields of the
node that measured it: its environment (host, CPU, GPU, torch, load, ...), its hardware
kind (``node_hardware``, what the point's key is hashed with) and its Ray node id. The
git fields stay the driver's: its code is what every node runs (shipped as the job's
working directory).

A call first reports that it has started, then its result (a streaming generator), so a
point's time waiting for an actor never counts against its timeout. Failures:

- past its timeout: ``run_point`` on the node kills the child and returns ``timeout``; if
  the worker itself hangs, the driver kills the actor (``ray.kill``) ``GRACE_S`` after the
  timeout and writes ``timeout``;
- the worker or its node dies: ``error`` with Ray's reason; the sweep goes on with a new
  actor;
- Ray's memory monitor kills the worker: ``oom`` with Ray's reason.

Nothing is retried (no actor restarts, no task retries): a retry would measure a point
twice and hide the failure.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from suites.harness import process_settings
from suites.harness.environment import REPO_ROOT, environment
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
# What Ray's memory monitor says of a worker it killed (in the error of an actor that died).
_MEMORY_MONITOR = "running low on memory"
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


class PointWorker:
    """A warm worker: the Ray actor that measures points one after another."""

    def measure(
        self,
        runner: str,
        params: dict[str, Any],
        options: dict[str, Any],
        timeout_s: float,
        max_memory_gb: float | None,
        device: str,
    ) -> Any:
        """:func:`measure_on_node`, in this actor's process."""
        yield from measure_on_node(runner, params, options, timeout_s, max_memory_gb, device)


Shape = tuple[float, float, str | None]  # (CPUs, GPUs, hardware kind or None: any)


@dataclass(eq=False)
class _Actor:
    handle: Any  # ray.actor.ActorHandle of a PointWorker
    shape: Shape
    job: int | None = None  # the ident of the job it runs, None when idle


@dataclass
class _Task:
    job: Job
    actor: _Actor
    stream: Any  # ray.ObjectRefGenerator
    node: dict[str, Any] = field(default_factory=dict)  # node_fields once started
    started_at: float | None = None  # time.monotonic() when the task reported its start


class RayExecutor:
    """Warm Ray workers on the cluster at ``address`` (see the module docstring)."""

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
                runtime_env={
                    "working_dir": str(REPO_ROOT),
                    "excludes": SHIPPING_EXCLUDES,
                    # Workers on other nodes run points under the same settings.
                    "env_vars": process_settings.exported(),
                },
            )
        self._worker = ray.remote(max_restarts=0, max_task_retries=0)(PointWorker)
        self._resources: dict[str, dict[str, float]] = {}  # node id -> its total resources
        self._nodes = self._probe_nodes()
        self._waiting: list[Job] = []
        self._actors: list[_Actor] = []
        self._tasks: dict[int, _Task] = {}

    # -- Executor ----------------------------------------------------------------------

    def hardware(self) -> list[str]:
        return sorted({node["node_hardware"] for node in self._nodes.values()})

    def has_room(self) -> bool:
        return True  # jobs wait here for a free actor; waiting time is not timed

    def submit(self, job: Job) -> None:
        self._waiting.append(job)
        self._dispatch()

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
        done += self._expire()
        self._dispatch()
        return done

    def cancel(self, ident: int) -> None:
        self._waiting = [job for job in self._waiting if job.ident != ident]
        task = self._tasks.pop(ident, None)
        if task is not None:
            self._let_go(task.actor)  # an actor call cannot be force-cancelled: end its actor

    def busy(self) -> int:
        return sum(task.started_at is not None for task in self._tasks.values())

    def close(self) -> None:
        self._waiting.clear()
        for ident in list(self._tasks):
            self.cancel(ident)
        for actor in list(self._actors):
            self._let_go(actor)
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
        self._resources = {node["NodeID"]: dict(node["Resources"]) for node in nodes}
        described = ", ".join(sorted({f"{f['node_hardware']} ({f['host']})" for f in facts}))
        print(f"ray: {len(facts)} node(s) for {self.device} points: {described}", file=self._log)
        return {fields["ray_node_id"]: fields for fields in facts}

    def _shape(self, job: Job) -> Shape:
        """The resources and hardware kind of the actor that may run ``job``."""
        threads = job.point.params.get("num_threads")
        cpus = threads or (1 if self.device == "cuda" else self._whole_node_cpus)
        return float(cpus), 1.0 if self.device == "cuda" else 0.0, job.hardware

    def _capacity(self, shape: Shape) -> int:
        """How many actors of ``shape`` the cluster's nodes hold at once."""
        cpus, gpus, hardware = shape
        total = 0
        for node_id, resources in self._resources.items():
            if (
                hardware is not None
                and self._nodes.get(node_id, {}).get("node_hardware") != hardware
            ):
                continue
            fits = int(resources.get("CPU", 0) // cpus) if cpus else 1 << 30
            if gpus:
                fits = min(fits, int(resources.get("GPU", 0) // gpus))
            total += fits
        return max(1, total)

    def _nodes_of(self, hardware: str | None) -> list[str]:
        """The ids of the nodes of a hardware kind (None: every node)."""
        return [
            node_id
            for node_id, node in self._nodes.items()
            if hardware is None or node["node_hardware"] == hardware
        ]

    def _dispatch(self) -> None:
        """Start waiting jobs on idle (or new) actors, the most family work left first;
        then let go of idle actors no waiting job can use, if any job still waits."""
        self._waiting.sort(key=lambda job: (-job.family_work, job.ident))
        for job in list(self._waiting):
            actor = self._actor_for(self._shape(job))
            if actor is None:
                continue
            self._waiting.remove(job)
            self._start(job, actor)
        needed = {self._shape(job) for job in self._waiting}
        needed |= {task.actor.shape for task in self._tasks.values() if task.started_at is None}
        if needed:
            for actor in [a for a in self._actors if a.job is None and a.shape not in needed]:
                self._let_go(actor)

    def _actor_for(self, shape: Shape) -> _Actor | None:
        """An idle actor of ``shape``, a new one if the cluster holds another, else None."""
        same = [actor for actor in self._actors if actor.shape == shape]
        idle = next((actor for actor in same if actor.job is None), None)
        if idle is not None or len(same) >= self._capacity(shape):
            return idle
        cpus, gpus, hardware = shape
        options: dict[str, Any] = {"num_cpus": cpus}
        if gpus:
            options["num_gpus"] = gpus
        if hardware is not None:
            options["label_selector"] = _on_nodes(
                [
                    node_id
                    for node_id, node in self._nodes.items()
                    if node["node_hardware"] == hardware
                ]
            )
        actor = _Actor(self._worker.options(**options).remote(), shape)
        self._actors.append(actor)
        return actor

    def _start(self, job: Job, actor: _Actor) -> None:
        point = job.point
        stream = actor.handle.measure.options(num_returns="streaming").remote(
            point.runner,
            point.params,
            point.runner_options(),
            job.timeout_s,
            job.max_memory_gb,
            self.device,
        )
        actor.job = job.ident
        self._tasks[job.ident] = _Task(job, actor, stream)

    def _let_go(self, actor: _Actor) -> None:
        """End an actor (and whatever it runs); its resources go back to the cluster."""
        if actor in self._actors:
            self._actors.remove(actor)
        self._ray.kill(actor.handle, no_restart=True)

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
            self._let_go(task.actor)  # it failed: a fresh actor takes the next job
            wall_s = 0.0 if task.started_at is None else time.monotonic() - task.started_at
            item = {**task.node, **failure, "wall_s": wall_s}
        else:
            task.actor.job = None
        return [Finished(ident=task.job.ident, result=item, hardware=self._kind(task))]

    def _expire(self) -> list[Finished]:
        """End the actors of started tasks past their deadline; each becomes a timeout."""
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
                        "grace): the Ray worker was ended (ray.kill)",
                    },
                )
            )
        return done

    def _kind(self, task: _Task) -> str:
        """The hardware kind that ran (or was to run) a task."""
        return task.node.get("node_hardware") or task.job.hardware or self.hardware()[0]


def ray_failure(exc: BaseException) -> dict[str, Any]:
    """A task that Ray reports failed: killed by Ray's memory monitor is oom (a task's
    OutOfMemoryError, or an actor that died of it), anything else (a dead worker or node,
    a failed runtime environment) is error; Ray's reason is the row's error either way."""
    from ray.exceptions import OutOfMemoryError

    text = describe(exc)
    oom = isinstance(exc, OutOfMemoryError) or _MEMORY_MONITOR in text
    return {"status": "oom" if oom else "error", "error": text}


def _on_nodes(node_ids: list[str]) -> dict[str, str]:
    """A label selector for any one of these nodes."""
    return {"ray.io/node-id": f"in({','.join(node_ids)})"}

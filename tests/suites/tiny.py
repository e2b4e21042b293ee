"""Tiny suites for the harness tests, and the synthetic runners their points name
("tests.suites.tiny:..."), which run in the harness's child processes."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import suites.run as run_module
from suites.harness.options import SweepOptions
from suites.harness.points import Point
from suites.harness.suite import GridContext, Suite
from suites.harness.sweep import run_sweep

CTX = GridContext(device="cpu", mode="quick")
MODULE = "tests.suites.tiny"


# -- runners (executed in the child) -------------------------------------------------------


def ok_runner(params, options):
    _mark(params)
    return {"t_median_ms": 1.0, "peak_mib": 0.0}


def raising_runner(params, options):
    _mark(params)
    raise ValueError(f"bad point seq_len={params['seq_len']}")


def alloc_runner(params, options):
    """Allocates and touches seq_len MiB."""
    import torch

    _mark(params)
    buffer = torch.ones(params["seq_len"] * 2**20 // 4)
    return {"peak_mib": float(buffer.numel() * 4 / 2**20)}


def sigkill_runner(params, options):
    os.kill(os.getpid(), signal.SIGKILL)


def sleeping_runner(params, options):
    time.sleep(60)


def too_slow_runner(params, options):
    """Stops itself past a limit of its own, as the decode suite's HF decoder does."""
    from suites.harness.isolation import TooSlow

    raise TooSlow(f"a step at seq_len={params['seq_len']} took 3 s, over the limit of 2 s")


def _mark(params):
    """Leave a trace per call, so tests can count which points were really measured."""
    if params.get("marks"):
        with open(params["marks"], "a") as handle:
            handle.write(f"{params['model']}:{params['seq_len']}\n")


# -- helpers -------------------------------------------------------------------------------


def _point(runner, model, seq_len, marks=None, timeout_s=60.0):
    params = {
        "model": model,
        "phase": "fwd",
        "seq_len": seq_len,
        "batch": 1,
        "device": "cpu",
        "marks": str(marks) if marks else None,
    }
    return Point(params=params, runner=f"{MODULE}:{runner}", timeout_s=timeout_s)


def _suite(points, name="tiny"):
    return Suite(name=name, description="test", grid=lambda ctx: list(points))


def _sweep(points, tmp_path, **kwargs):
    """A sweep of ``points`` into ``tmp_path`` with no memory cap."""
    kwargs.setdefault("max_memory_gb", None)
    return _sweep_to(points, tmp_path, **kwargs)


def _marks(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


RUNNERS = "tests.suites.point_runners"


def _use_suite(monkeypatch, points):
    """The CLI (suites.run) sees one suite, 'tiny', of ``points``."""
    suite = _suite(points, name="tiny")
    monkeypatch.setattr(run_module, "load_suites", lambda: {"tiny": suite})
    monkeypatch.setattr(run_module, "get_suite", lambda name: suite)
    return suite


def _sweep_to(points, out, log=None, ctx=CTX, **kwargs):
    """A sweep of ``points`` into ``out``, its log in ``log`` (a StringIO by default)."""
    kwargs.setdefault("progress", False)
    return run_sweep(
        _suite(points), ctx, SweepOptions(out_dir=out, **kwargs), log=log or io.StringIO()
    )

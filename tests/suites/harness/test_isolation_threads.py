"""Two sweeps in one process (a local sweep beside a Ray one) start points from two
threads: the fork server must not be stopped for new settings while the other thread
connects to it."""

from __future__ import annotations

import threading

from suites.harness import isolation

PARAMS = {"model": "fine", "phase": "fwd", "seq_len": 8, "batch": 1, "device": "cpu"}


def test_points_started_from_two_threads_survive_fork_server_restarts(monkeypatch):
    errors: list[str] = []
    statuses: list[str] = []

    def one() -> None:
        try:
            row = isolation.run_point(
                "tests.suites.point_runners:ok",
                dict(PARAMS, num_threads=1),
                {},
                timeout_s=60,
                max_memory_gb=None,
            )
            statuses.append(row["status"])
        except Exception as exc:  # the race showed as EBADF or a TypeError in the connect
            errors.append(repr(exc))

    for flip in range(6):
        # New settings each time: every first start below restarts the fork server.
        monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE" if flip % 2 else "ACTIVE")
        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[:2]
    assert statuses == ["ok"] * 12

"""Staleness is computed from git: current, stale by N model commits, dirty, unknown."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from suites.rows.staleness import Staleness, commits_since, staleness


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _commit(root: Path, path: str, text: str) -> str:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", path)
    return _git(root, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    return tmp_path


def test_only_model_commits_make_a_run_stale(repo: Path):
    run = _commit(repo, "reformer/a.py", "1")
    _commit(repo, "suites/s.py", "suite change")  # not the measured code
    _commit(repo, "README.md", "docs")
    assert staleness([run], [False], root=repo) == Staleness("current", 0, run)
    _commit(repo, "reformer/a.py", "2")
    _commit(repo, "baselines/b.py", "3")
    later = staleness([run], [False], root=repo)
    assert later.state == "stale" and later.commits_since == 2
    assert later.label() == "2 model commits" and not later.current
    assert commits_since(run, repo) == 2


def test_a_resumed_run_is_as_stale_as_its_oldest_code(repo: Path):
    old = _commit(repo, "reformer/a.py", "1")
    new = _commit(repo, "reformer/a.py", "2")
    got = staleness([new, old, new[:10]], [False, False], root=repo)
    assert got.commits_since == 1 and got.sha == old


def test_dirty_and_unknown_runs_are_never_current(repo: Path):
    run = _commit(repo, "reformer/a.py", "1")
    assert staleness([run], [False, True], root=repo).state == "dirty"
    assert staleness([run], ["True"], root=repo).label() == "dirty tree"
    assert staleness([None, "?"], root=repo).state == "unknown"
    assert staleness(["0" * 40], root=repo).state == "unknown"  # a sha this clone lacks
    assert staleness([run], root=repo / "no-repo-here").state == "unknown"

"""Is a committed run current? Computed from git, never typed by hand.

A run measures the model code at its rows' ``git_sha``. It is **current** when that code is
the code at HEAD (``git diff --quiet <sha> HEAD -- reformer/ baselines/`` holds) and none
of its rows was measured from a dirty tree; otherwise it is **stale** by the number of
commits to ``reformer/`` or ``baselines/`` since its sha. Changes elsewhere (suites,
reports, docs) do not make a run stale: they do not change what was measured.

Only git is read, so the report (which must not import torch) can use it.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MODEL_PATHS = ("reformer", "baselines")
_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Staleness:
    """Whether a run's code is HEAD's model code.

    state: "current" | "stale" | "dirty" (some row from an uncommitted tree) | "unknown"
    (no sha, or a sha this clone does not hold, e.g. a shallow clone).
    commits_since: model commits between the run's sha and HEAD (None when unknown).
    """

    state: str
    commits_since: int | None
    sha: str | None

    @property
    def current(self) -> bool:
        return self.state == "current"

    def label(self) -> str:
        """Short text for a table's "code since" column."""
        if self.state == "current":
            return "current"
        if self.state == "dirty":
            return "dirty tree"
        if self.state == "unknown":
            return "unknown"
        count = self.commits_since
        return f"{count} model commit{'s' if count != 1 else ''}"


def staleness(
    shas: Iterable[object], dirty: Iterable[object] = (), *, root: Path | None = None
) -> Staleness:
    """The staleness of one run from its rows' ``git_sha`` and ``git_dirty`` values.

    A run whose rows carry several shas (a resumed sweep) is as stale as its oldest code:
    the largest count wins. Any dirty row makes the run "dirty".
    """
    root = _ROOT if root is None else Path(root)
    known = sorted({str(sha) for sha in shas if _is_sha(sha)})
    if any(flag is True or str(flag).lower() == "true" for flag in dirty):
        return Staleness("dirty", None, known[0] if known else None)
    if not known:
        return Staleness("unknown", None, None)
    worst: Staleness | None = None
    for sha in known:
        count = commits_since(sha, root)
        if count is None:
            return Staleness("unknown", None, sha)
        state = "current" if count == 0 and _same_model_code(sha, root) else "stale"
        # A sha with zero model commits since but a different tree cannot happen in one
        # history; count at least 1 so "stale" never reads "0 model commits".
        one = Staleness(state, max(count, 0 if state == "current" else 1), sha)
        if worst is None or (one.commits_since or 0) > (worst.commits_since or 0):
            worst = one
    assert worst is not None
    return worst


def commits_since(sha: str, root: Path = _ROOT) -> int | None:
    """Commits touching reformer/ or baselines/ in ``sha..HEAD``; None if git cannot say."""
    head = head_sha(root)
    return None if head is None else _count(sha, head, root)


def _same_model_code(sha: str, root: Path) -> bool:
    head = head_sha(root)
    return head is not None and _same(sha, head, root)


# Keyed by HEAD too, so a commit made while a process runs is seen.
@functools.lru_cache(maxsize=512)
def _count(sha: str, head: str, root: Path) -> int | None:
    out = _git(root, "rev-list", "--count", f"{sha}..{head}", "--", *MODEL_PATHS)
    return int(out) if out is not None and out.isdigit() else None


@functools.lru_cache(maxsize=512)
def _same(sha: str, head: str, root: Path) -> bool:
    return _git(root, "diff", "--quiet", sha, head, "--", *MODEL_PATHS) is not None


def head_sha(root: Path | None = None) -> str | None:
    return _git(_ROOT if root is None else Path(root), "rev-parse", "HEAD")


def _git(root: Path, *args: str) -> str | None:
    """stdout of a git command that exited 0, else None (no git, no repo, unknown sha)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _is_sha(value: object) -> bool:
    text = str(value) if value is not None else ""
    return 7 <= len(text) <= 40 and all(c in "0123456789abcdef" for c in text)

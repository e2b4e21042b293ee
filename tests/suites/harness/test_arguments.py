"""Command-line values refused while parsing."""

from __future__ import annotations

import pytest

from suites.run import main
from tests.suites.tiny import _point, _use_suite


def test_out_under_proc_is_refused(monkeypatch, capsys):
    _use_suite(monkeypatch, [_point("ok_runner", "a", 8)])
    with pytest.raises(SystemExit) as exc:
        main(["tiny", "--no-progress", "--out", "/proc/reformer-bench-results"])
    assert exc.value.code == 2 and "argument --out:" in capsys.readouterr().err

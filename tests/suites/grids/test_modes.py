"""Grid modes: quick, default and paper. ``--paper`` selects the paper-scale grid; its old
name ``--full`` (also the name of an attention) still works, says it is deprecated, and
is left out of ``--help``."""

from __future__ import annotations

import pytest

from suites.harness.suite import GridContext
from suites.rows.schema import MODES
from suites.run import build_parser, main


def test_paper_and_its_deprecated_alias_select_the_paper_grid(capsys):
    assert build_parser().parse_args(["memory", "--paper"]).mode == "paper"
    assert capsys.readouterr().err == ""
    assert build_parser().parse_args(["memory", "--full"]).mode == "paper"
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "--full is deprecated" in notice and "--paper" in notice


def test_full_lists_the_same_points_as_paper(capsys):
    assert main(["scale", "--paper", "--list"]) == 0
    paper = capsys.readouterr()
    assert main(["scale", "--full", "--list"]) == 0
    full = capsys.readouterr()
    assert "(paper, cpu)" in paper.out and full.out == paper.out
    assert "deprecated" in full.err and "deprecated" not in paper.err


def test_help_names_paper_not_full(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--paper" in text and "--full" not in text


def test_full_and_quick_together_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--full", "--quick", "--list"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_an_unknown_mode_is_refused_by_name():
    assert MODES == ("quick", "default", "paper")
    with pytest.raises(ValueError, match=r"mode='full' is unknown; allowed: \('quick'"):
        GridContext(device="cpu", mode="full")

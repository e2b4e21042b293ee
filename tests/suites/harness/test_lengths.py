"""--lengths: parsing the forms, selecting a grid's points, and errors that name the flag."""

from __future__ import annotations

import pytest

from suites.harness.lengths import parse_length, parse_lengths, select_lengths
from suites.harness.suite import GridContext
from suites.registry import load_suites
from suites.run import main


@pytest.mark.parametrize("text", ["1048576", "2^20", "2**20", "1M", "1024K", " 1m "])
def test_length_forms(text):
    assert parse_length(text) == 2**20


@pytest.mark.parametrize("text", ["abc", "2^", "1G", "-4", "0", "1.5M"])
def test_bad_length_names_the_flag_and_the_forms(text):
    with pytest.raises(ValueError, match=r"--lengths.*(power of two|positive)"):
        parse_length(text)


def test_select_keeps_the_lengths_asked_for_and_names_the_allowed_ones():
    from suites.grids.scale import grid

    points = grid(GridContext(device="cpu", mode="paper"))
    chosen = select_lengths(points, parse_lengths("2^18,1M"))
    assert {p.seq_len for p in chosen} == {2**18, 2**20}
    assert {p.params["n_layers"] for p in chosen if p.seq_len == 2**18} == {2, 12}
    assert select_lengths(points, None) == points
    with pytest.raises(ValueError, match=r"--lengths 3000: .*allowed: \[4096,"):
        select_lengths(points, [3000])


def test_cli_rejects_a_length_outside_the_grid(capsys):
    with pytest.raises(SystemExit):
        main(["scale", "--lengths", "2^21"])
    assert "--lengths 2097152" in capsys.readouterr().err


def test_train_keeps_the_points_of_the_models_trained_so():
    from suites.harness.lengths import select_trained

    points = load_suites()["quality"].grid(GridContext(device="cpu", mode="quick"))
    local = select_trained(points, ("local",))
    assert local and {p.params["train_attention"] for p in local} == {"local"}
    assert {p.params["task"] for p in local} == {"duplication", "bytes"}
    assert select_trained(points, None) == points
    with pytest.raises(ValueError, match=r"--train lsh-3.*allowed: \[.*'local'"):
        select_trained(points, ("lsh-3",))


def test_train_is_the_quality_suites_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["memory", "--quick", "--train", "local", "--list"])
    assert exc.value.code == 2 and "--train applies only to the quality suite" in (
        capsys.readouterr().err
    )

"""CI perf gates: each gate fails on a doctored measurement, readably, and passes
on a good one; the ratio pipeline (bench JSON -> gate -> history) end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from suites.ci import __main__ as ci
from suites.ci.baseline import load_baseline, updated_baseline, write_baseline
from suites.ci.deterministic import MEASURES, loglog_slope, per_token_spread
from suites.ci.gates import BENCH_FILE, FIGURES, SPECS, check_limits, check_ratio
from suites.ci.history import append_history, history_rows
from suites.harness.environment import REPO_ROOT, cpu_model

HERE = cpu_model()  # the machine kind a run on this machine is gated as

LENGTHS = (1024, 2048, 4096, 8192)


def _slope_of_power(power: float) -> float:
    return loglog_slope(LENGTHS, [3.0 * length**power for length in LENGTHS])


def test_loglog_slope_recovers_the_power():
    assert _slope_of_power(1.0) == pytest.approx(1.0)
    assert _slope_of_power(2.0) == pytest.approx(2.0)
    # memory = a + b*L^2 bends from 0 towards 2: the fit lands in between
    assert 1.0 < loglog_slope(LENGTHS, [4e6 + length**2 for length in LENGTHS]) < 2.0
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1, 2], [0, 1])


def test_per_token_spread():
    assert per_token_spread([5.0, 5.0, 5.0]) == 0
    assert per_token_spread([1.0, 1.05, 1.1]) == pytest.approx(0.1)


def test_lsh_saved_bytes_slope_of_two_fails_readably():
    points = {length: 4 * length**2 for length in LENGTHS}  # doctored: quadratic memory
    outcome = check_limits(
        "saved_bytes_slope_lsh",
        loglog_slope(list(points), list(points.values())),
        {"points": points, "points_unit": "bytes"},
    )
    assert outcome.status == "fail"
    message = outcome.message
    assert message.startswith("FAIL saved_bytes_slope_lsh = 2.000")
    assert "limit <= 1.15" in message and "moved +0.850 past 1.15" in message
    assert "8192: 256.00 MiB" in message  # the measurement behind the figure
    assert "python -m suites.ci --only saved_bytes_slope_lsh --no-history" in message


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("saved_bytes_slope_lsh", 0.94, 2.0),
        ("saved_bytes_slope_sdpa", 0.93, 1.9),
        ("saved_bytes_slope_full", 1.95, 1.0),  # full attention that stopped being quadratic
        ("saved_bytes_depth_ratio", 1.0, 6.0),  # reversible memory growing with depth
        ("flops_per_token_spread_lsh", 0.05, 0.5),
        ("flops_per_token_slope_full", 1.0, 2.0),
        ("flops_per_token_slope_full", 1.0, 0.0),
    ],
)
def test_deterministic_gates_pass_good_and_fail_doctored(name, good, bad):
    assert check_limits(name, good).status == "pass"
    failed = check_limits(name, bad)
    assert failed.status == "fail"
    assert name in failed.message and SPECS[name].reproduce() in failed.message
    assert check_limits(name, math.nan).status == "fail"


def test_ratio_gate_fails_40_percent_worse_and_passes_noise():
    baseline, tolerance = 0.5, 0.25
    detail = {
        "ratio_low": 0.66,
        "ratio_high": 0.74,
        "numerator": "attn-lsh",
        "denominator": "attn-full",
        "numerator_median_s": 0.7,
        "denominator_median_s": 1.0,
        "rounds": 15,
    }
    failed = check_ratio("lsh4_vs_full_8k", 0.7, baseline, tolerance, detail)
    assert failed.status == "fail"
    assert failed.message.startswith("FAIL lsh4_vs_full_8k = 0.700 vs baseline 0.500: +40.0%")
    assert "+25% tolerance" in failed.message and "0.660-0.740" in failed.message
    assert "medians attn-lsh 700 ms / attn-full 1000 ms over 15 rounds" in failed.message
    assert "python -m suites.ci --only lsh4_vs_full_8k --no-history" in failed.message
    assert check_ratio("lsh4_vs_full_8k", 0.55, baseline, tolerance).status == "pass"
    faster = check_ratio("lsh4_vs_full_8k", 0.3, baseline, tolerance)
    assert faster.status == "pass" and "--update-baseline" in faster.message
    assert check_ratio("lsh4_vs_full_8k", math.inf, baseline, tolerance).status == "fail"


def test_gate_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown; allowed"):
        check_limits("no_such_figure", 1.0)
    with pytest.raises(ValueError, match="use check_ratio"):
        check_limits("lsh4_vs_full_8k", 1.0)
    with pytest.raises(ValueError, match="tolerance"):
        check_ratio("lsh4_vs_full_8k", 1.0, 1.0, 25)
    with pytest.raises(ValueError, match="baseline"):
        check_ratio("lsh4_vs_full_8k", 1.0, 0.0, 0.25)


def test_every_figure_has_a_measurement_or_a_benchmark():
    bench_source = (REPO_ROOT / BENCH_FILE).read_text()
    for figure in FIGURES:
        if figure.kind == "deterministic":
            assert figure.name in MEASURES
        else:
            path, test_name = figure.bench.split("::")
            assert (REPO_ROOT / path).exists() and f"def {test_name}(" in bench_source
            assert f'"{figure.name}"' in bench_source
    assert set(MEASURES) == {f.name for f in FIGURES if f.kind == "deterministic"}


def _bench_json(path: Path, ratios: dict[str, float]) -> Path:
    benchmarks = [
        {
            "name": name,
            "extra_info": {
                "figure": name,
                "ratio": ratio,
                "ratio_low": ratio * 0.95,
                "ratio_high": ratio * 1.05,
                "numerator_median_s": ratio,
                "denominator_median_s": 1.0,
                "rounds": 15,
                "num_threads": 1,
                "numerator_times_s": [ratio] * 15,
            },
        }
        for name, ratio in ratios.items()
    ]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def _ci_dir(tmp_path: Path, ratios: dict[str, float], machine: str = HERE) -> Path:
    ci_dir = tmp_path / "ci"
    ci_dir.mkdir()
    write_baseline(
        ci_dir / "baseline.json",
        {
            "schema_version": 2,
            "tolerance": 0.25,
            "machines": {machine: {"figures": {n: {"ratio": r} for n, r in ratios.items()}}},
        },
    )
    return ci_dir


def test_cli_fails_on_a_doctored_bench_json_and_writes_history(tmp_path, capsys):
    ci_dir = _ci_dir(tmp_path, {"lsh4_vs_full_8k": 0.15, "reversible_vs_plain_step": 1.45})
    doctored = _bench_json(
        tmp_path / "bench.json",
        {
            "lsh4_vs_full_8k": 0.21,  # +40%
            "reversible_vs_plain_step": 1.5,
        },
    )
    exit_code = ci.main(
        [
            "--only",
            "lsh4_vs_full_8k",
            "--only",
            "reversible_vs_plain_step",
            "--bench-json",
            str(doctored),
            "--ci-dir",
            str(ci_dir),
        ]
    )
    err = capsys.readouterr().err
    assert exit_code == 1
    assert "1 of 2 perf gates FAILED" in err
    assert "FAIL lsh4_vs_full_8k = 0.210 vs baseline 0.150: +40.0%" in err
    assert "reproduce: python -m suites.ci --only lsh4_vs_full_8k --no-history" in err
    rows = [json.loads(line) for line in (ci_dir / "history.jsonl").read_text().splitlines()]
    assert [(r["figure"], r["status"]) for r in rows] == [
        ("lsh4_vs_full_8k", "fail"),
        ("reversible_vs_plain_step", "pass"),
    ]
    for row in rows:
        assert {
            "git_sha",
            "git_dirty",
            "host",
            "cpu_model",
            "n_cpus",
            "torch",
            "timestamp_utc",
            "run_id",
            "baseline",
            "tolerance",
        } <= row.keys()
        assert row["value"] > 0 and row["bench_json"] == str(doctored)
        assert "numerator_times_s" not in row["detail"]  # raw times stay in the bench JSON
    assert rows[0]["detail"]["num_threads"] == 1
    assert rows[0]["limit_upper"] == pytest.approx(0.15 * 1.25)


def test_cli_passes_a_good_bench_json(tmp_path, capsys):
    ci_dir = _ci_dir(tmp_path, {"lsh4_vs_full_8k": 0.15})
    good = _bench_json(tmp_path / "bench.json", {"lsh4_vs_full_8k": 0.16})
    assert (
        ci.main(
            [
                "--only",
                "lsh4_vs_full_8k",
                "--bench-json",
                str(good),
                "--ci-dir",
                str(ci_dir),
                "--no-history",
            ]
        )
        == 0
    )
    assert "all 1 perf gates passed" in capsys.readouterr().out
    assert not (ci_dir / "history.jsonl").exists()


def test_missing_results_fail_unless_the_peer_is_absent(tmp_path, monkeypatch, capsys):
    ci_dir = _ci_dir(tmp_path, {"lsh4_vs_full_8k": 0.15, "ours_vs_reformer_pytorch": 0.46})
    empty = _bench_json(tmp_path / "bench.json", {})
    monkeypatch.setattr(ci, "_peer_available", lambda model: False)
    outcomes = ci.gate_ratios(
        ["lsh4_vs_full_8k", "ours_vs_reformer_pytorch"], empty, ci_dir / "baseline.json", HERE
    )
    assert [o.status for o in outcomes] == ["fail", "skipped"]
    assert "no result" in outcomes[0].message
    assert "reformer-pytorch is not installed" in outcomes[1].message
    monkeypatch.setattr(ci, "_peer_available", lambda model: True)
    outcomes = ci.gate_ratios(["ours_vs_reformer_pytorch"], empty, ci_dir / "baseline.json", HERE)
    assert outcomes[0].status == "fail"  # installed but no result: its benchmark broke


def test_a_ratio_without_baseline_here_is_skipped_kept_and_says_how_to_add_one(tmp_path):
    # A gate added after this machine kind's baseline: only such a machine can measure it.
    ci_dir = _ci_dir(tmp_path, {"lsh4_vs_full_8k": 0.15})
    bench = _bench_json(tmp_path / "bench.json", {"reversible_vs_plain_step": 1.4})
    [outcome] = ci.gate_ratios(["reversible_vs_plain_step"], bench, ci_dir / "baseline.json", HERE)
    assert outcome.status == "skipped" and outcome.value == pytest.approx(1.4)
    assert "--update-baseline --only reversible_vs_plain_step" in outcome.message


def test_a_ratio_is_gated_only_against_its_own_machine_kind(tmp_path):
    # The same code gives LSH-4 / SDPA at 2K about 0.6 on one CPU kind and 0.9 on another:
    # a run is compared with the baseline of its kind, and a kind without any is skipped
    # (with the command that measures one), never compared with another CPU's ratio.
    ci_dir = tmp_path / "ci"
    ci_dir.mkdir()
    write_baseline(
        ci_dir / "baseline.json",
        {
            "schema_version": 2,
            "tolerance": 0.25,
            "machines": {
                "CPU A": {"figures": {"lsh4_vs_sdpa_2k": {"ratio": 0.6}}},
                "CPU B": {"figures": {"lsh4_vs_sdpa_2k": {"ratio": 0.9}}},
            },
        },
    )
    bench = _bench_json(tmp_path / "bench.json", {"lsh4_vs_sdpa_2k": 0.89})
    path = ci_dir / "baseline.json"
    [on_a] = ci.gate_ratios(["lsh4_vs_sdpa_2k"], bench, path, "CPU A")
    [on_b] = ci.gate_ratios(["lsh4_vs_sdpa_2k"], bench, path, "CPU B")
    [on_c] = ci.gate_ratios(["lsh4_vs_sdpa_2k"], bench, path, "CPU C")
    assert on_a.status == "fail" and on_a.baseline == 0.6
    assert on_b.status == "pass" and on_b.baseline == 0.9
    assert on_c.status == "skipped"
    assert "'CPU C'" in on_c.message and "'CPU A', 'CPU B'" in on_c.message
    assert "--update-baseline" in on_c.message


def test_update_baseline_takes_the_median_of_runs_and_logs_why(tmp_path, capsys):
    ci_dir = _ci_dir(tmp_path, {"lsh4_vs_full_8k": 0.15})
    runs = [
        _bench_json(tmp_path / f"run{i}.json", {"lsh4_vs_full_8k": ratio})
        for i, ratio in enumerate((0.20, 0.22, 0.21))
    ]
    argv = [
        "--update-baseline",
        "--only",
        "lsh4_vs_full_8k",
        "--ci-dir",
        str(ci_dir),
        "--why",
        "LSH kernel recomputes logits in backward",
    ]
    for run in runs:
        argv += ["--bench-json", str(run)]
    assert ci.main(argv) == 0
    assert 'git commit -m "ci: update perf baseline: LSH kernel' in capsys.readouterr().out
    baseline = load_baseline(ci_dir / "baseline.json", HERE)
    assert baseline.ratios == {"lsh4_vs_full_8k": pytest.approx(0.21)}
    entry = baseline.figures()["lsh4_vs_full_8k"]
    assert entry["runs"] == [0.2, 0.22, 0.21]
    assert entry["max_run_deviation"] == pytest.approx(0.01 / 0.21, rel=1e-3)
    [update] = baseline.raw["updates"]
    assert update["why"] == "LSH kernel recomputes logits in backward"
    assert update["cpu_model"] == HERE
    assert update["changed"]["lsh4_vs_full_8k"] == {"old": 0.15, "new": 0.21}
    good = _bench_json(tmp_path / "good.json", {"lsh4_vs_full_8k": 0.22})
    assert (
        ci.main(
            [
                "--only",
                "lsh4_vs_full_8k",
                "--bench-json",
                str(good),
                "--ci-dir",
                str(ci_dir),
                "--no-history",
            ]
        )
        == 0
    )


def test_update_baseline_of_named_figures_keeps_every_other_figure(tmp_path, capsys):
    # A figure added to CI gets its baseline alone: the runs' JSON also holds another
    # figure (measured lower), whose committed entry must stay exactly as it was.
    ci_dir = _ci_dir(tmp_path, {"lsh4_vs_full_8k": 0.2, "reversible_vs_plain_step": 1.45})
    other = json.loads((ci_dir / "baseline.json").read_text())
    other["machines"]["another CPU"] = {"figures": {"lsh4_vs_sdpa_2k": {"ratio": 0.5}}}
    write_baseline(ci_dir / "baseline.json", other)
    before = load_baseline(ci_dir / "baseline.json", HERE).figures()
    argv = ["--update-baseline", "--only", "lsh4_vs_sdpa_2k", "--ci-dir", str(ci_dir)]
    argv += ["--why", "new gate at 2K", "--no-history"]
    for i, ratio in enumerate((1.2, 1.3, 1.1, 1.25)):
        run = {"lsh4_vs_sdpa_2k": ratio, "lsh4_vs_full_8k": 0.1}
        argv += ["--bench-json", str(_bench_json(tmp_path / f"run{i}.json", run))]
    assert ci.main(argv) == 0
    assert "lsh4_vs_sdpa_2k: None -> 1.225" in capsys.readouterr().out
    after = load_baseline(ci_dir / "baseline.json", HERE)
    assert after.ratios == {
        "lsh4_vs_full_8k": 0.2,
        "reversible_vs_plain_step": 1.45,
        "lsh4_vs_sdpa_2k": pytest.approx(1.225),
    }
    assert {name: after.figures()[name] for name in before} == before
    assert after.figures()["lsh4_vs_sdpa_2k"]["runs"] == [1.2, 1.3, 1.1, 1.25]
    assert load_baseline(ci_dir / "baseline.json", "another CPU").ratios == {"lsh4_vs_sdpa_2k": 0.5}
    [update] = after.raw["updates"]
    assert update["changed"] == {"lsh4_vs_sdpa_2k": {"old": None, "new": 1.225}}
    assert not (ci_dir / "history.jsonl").exists()


def test_update_baseline_keeps_the_file_as_written_around_the_change(tmp_path):
    # baseline.json is a committed record: adding a figure appends lines, it rewrites none
    # (the JSON syntax of the entry before it aside: a closing brace gains a comma).
    path = tmp_path / "baseline.json"
    committed = load_baseline(REPO_ROOT / "results" / "ci" / "baseline.json", "AMD EPYC")
    # the committed file, before it had this figure
    del committed.raw["machines"]["AMD EPYC"]["figures"]["lsh4_vs_sdpa_2k"]
    write_baseline(path, committed.raw)
    before = path.read_text().splitlines()
    info = {"ratio": 1.2, "ratio_low": 1.1, "ratio_high": 1.3, "rounds": 60, "num_threads": 1}
    content = updated_baseline(
        load_baseline(path, "AMD EPYC"), {"lsh4_vs_sdpa_2k": [info]}, why="new gate", provenance={}
    )
    write_baseline(path, content)
    after = iter(path.read_text().splitlines())
    # Every old line, in order, among the new ones: a subsequence, each line as it was or
    # with a comma added.
    assert all(any(new in (line, f"{line},") for new in after) for line in before)
    assert '"lsh4_vs_sdpa_2k": {' in path.read_text()


def test_update_baseline_needs_a_reason(tmp_path):
    with pytest.raises(SystemExit):
        ci.parse_args(["--update-baseline"])
    baseline = load_baseline(tmp_path / "absent.json", HERE)
    with pytest.raises(ValueError, match="--why"):
        updated_baseline(baseline, {"lsh4_vs_full_8k": [{"ratio": 1.0}]}, why=" ", provenance={})


def test_a_broken_baseline_file_names_the_field(tmp_path):
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"schema_version": 2, "tolerance": 25, "machines": {}}))
    with pytest.raises(ValueError, match="tolerance=25"):
        load_baseline(path, HERE)
    bad = {"CPU A": {"figures": {"x": {"ratio": -1}}}}
    path.write_text(json.dumps({"schema_version": 2, "tolerance": 0.25, "machines": bad}))
    with pytest.raises(ValueError, match=r"machines\['CPU A'\].figures.x.ratio"):
        load_baseline(path, HERE)
    path.write_text(json.dumps({"schema_version": 1, "tolerance": 0.25, "figures": {}}))
    with pytest.raises(ValueError, match="schema_version=1"):
        load_baseline(path, HERE)


def test_history_is_append_only_and_survives_a_torn_line(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"figure": "old", "value": 1}\n{"torn')
    outcome = check_limits("saved_bytes_depth_ratio", 1.0, {"points": {2: 10, 12: 10}})
    rows = history_rows(
        [outcome],
        run_id="r1",
        provenance={"git_sha": "abc", "host": "h"},
        bench_json=None,
        command="python -m suites.ci",
    )
    append_history(path, rows)
    lines = path.read_text().splitlines()
    assert lines[:2] == ['{"figure": "old", "value": 1}', '{"torn']
    row = json.loads(lines[2])
    assert row["figure"] == "saved_bytes_depth_ratio" and row["status"] == "pass"
    assert row["detail"]["points"] == {"2": 10, "12": 10} and row["git_sha"] == "abc"
    assert (row["limit_lower"], row["limit_upper"]) == (None, 1.25)


def test_history_rows_load_into_the_report_trend():
    history_module = pytest.importorskip("reports.sections.ci_history")
    import pandas as pd

    rows = history_rows(
        [check_ratio("lsh4_vs_full_8k", 0.16, 0.15, 0.25)],
        run_id="r",
        provenance={"host": "h", "git_sha": "abc"},
        bench_json="b.json",
        command="c",
    )
    tidy = history_module.tidy_history(pd.DataFrame(rows))
    assert list(tidy["figure"]) == ["lsh4_vs_full_8k"]
    assert tidy["value"].iloc[0] == pytest.approx(0.16)
    assert tidy["baseline"].iloc[0] == pytest.approx(0.15)


def test_the_committed_baseline_is_valid_and_every_ratio_has_one_somewhere():
    path = REPO_ROOT / "results" / "ci" / "baseline.json"
    kinds = load_baseline(path, HERE).machines
    assert kinds, "the committed baseline holds no machine kind"
    ratios = {f.name for f in FIGURES if f.kind == "ratio"}
    covered: set[str] = set()
    for kind in kinds:
        baseline = load_baseline(path, kind)
        assert baseline.tolerance == pytest.approx(0.25)
        assert set(baseline.ratios) <= ratios, kind  # no baseline of a retired gate
        covered |= set(baseline.ratios)
        for entry in baseline.figures().values():  # noise alone stayed inside the tolerance
            assert entry["max_run_deviation"] < baseline.tolerance
    # Every gate has been measured somewhere (a new one on at least one machine kind).
    assert covered == ratios
    assert all(update["why"].strip() for update in baseline.raw["updates"])


def test_benchmarks_run_only_when_named():
    from suites.ci.benchmarks.conftest import _bench_requested

    def config(*args: str):
        return SimpleNamespace(args=list(args), invocation_params=SimpleNamespace(dir=REPO_ROOT))

    assert not _bench_requested(config("tests"))
    assert not _bench_requested(config("tests/suites/ci/test_gates.py"))
    assert _bench_requested(config("suites/ci/benchmarks"))
    assert not _bench_requested(config("suites"))
    assert _bench_requested(config("suites/ci/benchmarks/test_ratios.py::test_lsh4_vs_full_8k"))

"""The README's results block is generated: the committed one is what the committed rows
give, each figure comes from the newest run of the current model code (else the newest run,
said to be stale), and no result number is typed into the README outside it."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest

from reports.build import build_reports, parse_args
from reports.headline import HEADLINES, length
from reports.load import load_rows, normalise
from reports.readme import END, START, BlockError, main, replace_block, results_block
from suites.harness.environment import REPO_ROOT
from suites.rows.staleness import head_sha
from suites.rows.store import COMMITTED_OUT
from tests.reports.synthetic import decode_rows, memory_rows, time_rows, write_results

README = REPO_ROOT / "README.md"
# A result: a number with the unit of a time, a memory, a ratio or a share.
RESULT = re.compile(r"\d[\d.,]*\s?(ms|MiB|×|%|TFLOP/s|tokens/s|bits per byte)")


def _unresolvable_shas() -> list[str]:
    """Run shas this clone cannot resolve (a shallow clone): staleness reads 'unknown'
    there, so the committed block, built in a full clone, cannot be reproduced."""
    shas = set(load_rows(REPO_ROOT / COMMITTED_OUT)["git_sha"].dropna().astype(str))
    missing = []
    for sha in sorted(shas):
        done = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{sha}^{{commit}}"],
            capture_output=True,
        )
        if done.returncode != 0:
            missing.append(sha)
    return missing


def _block(text: str) -> str:
    return text[text.index(START) : text.index(END) + len(END)]


@pytest.mark.slow
def test_the_committed_readme_block_is_what_the_committed_rows_give(monkeypatch):
    missing = _unresolvable_shas()
    if missing:
        pytest.skip(f"a shallow clone: {len(missing)} run shas are not here ({missing[0]})")
    monkeypatch.chdir(REPO_ROOT)
    raw = load_rows(COMMITTED_OUT)
    fresh = results_block(raw, "reformer", REPO_ROOT / "docs" / "reports", REPO_ROOT)
    assert _block(README.read_text()) == fresh, (
        "README.md's results block is not what results/ gives: run `python -m reports.build` "
        "and commit README.md"
    )


def typed_results(text: str) -> list[str]:
    """Lines outside the block and outside code that state a result without naming the
    results file it comes from."""
    outside = text.replace(_block(text), "") if START in text else text
    outside = re.sub(r"```.*?```", "", outside, flags=re.DOTALL)  # code is not a claim
    return [
        line
        for line in outside.splitlines()
        if RESULT.search(line) and not re.search(r"\w+_\w+_\d{8}T\d{6}Z\.jsonl", line)
    ]


def test_no_result_number_stands_in_the_readme_outside_the_block():
    assert not typed_results(README.read_text()), "results typed by hand outside the block"


def test_the_check_for_typed_results_finds_them():
    assert typed_results("SDPA is 1.48× faster at 1K\nkept: 4 GiB cap per point\n") == [
        "SDPA is 1.48× faster at 1K"
    ]
    assert not typed_results("679 ms, from `time_cpu_20261203T093122Z.jsonl`\n")


def test_a_figure_comes_from_the_current_run_before_a_newer_stale_one(tmp_path):
    head = head_sha()
    assert head is not None
    first = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-list", "--max-parents=0", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    current = [dict(r, git_sha=head, run_id="decode_current") for r in decode_rows()]
    newer = [
        dict(
            r,
            git_sha=first,
            run_id="decode_newer",
            timestamp_utc="2024-06-01T00:00:00Z",
            t_median_ms=2 * r["t_median_ms"],
        )
        for r in decode_rows()
    ]
    block = _synthetic_block(tmp_path, current + newer)
    (line,) = [row for row in block.splitlines() if "at 1K context" in row]
    assert "| 8 / 1 |" in line and "| current |" in line
    # With the current run gone, the newer stale run is used and said to be stale.
    block = _synthetic_block(tmp_path / "stale", newer)
    (line,) = [row for row in block.splitlines() if "at 1K context" in row]
    assert "| 16 / 2 |" in line and "model commit" in line and f"at {first[:7]}" in line


def test_each_line_names_its_file_machine_and_marks(tmp_path):
    busy_sdpa = [
        dict(row, load_avg_1m=9.0) if row["model"] == "transformer-sdpa" else row
        for row in time_rows()
    ]
    block = _synthetic_block(tmp_path, memory_rows() + busy_sdpa)
    lines = [line for line in block.splitlines() if line.startswith("| ") and "---" not in line]
    assert lines[0].startswith("| figure | value | machine | measured | code since |")
    memory = next(line for line in lines if line.startswith("| reversible LSH peak, 6 / 2"))
    assert "training step at 8K" in memory and "`memory_cpu_synthetic.jsonl`" in memory
    assert "Test(R) CPU Model 9 @ 2.00GHz, 2 cores" in memory
    # SDPA's time rows ran under load: the value carries the mark
    sdpa = next(line for line in lines if "/ SDPA" in line and "at 512" in line)
    assert "8K tokens per batch" in sdpa and " * |" in sdpa
    assert "out of memory from 2K" in block  # materialised attention at 6 layers


def _synthetic_block(tmp_path, rows: list[dict]) -> str:
    results = write_results(tmp_path / "results", rows)
    return results_block(load_rows(results), "reformer", tmp_path / "reports", tmp_path)


def test_a_headline_reads_nothing_from_a_run_without_its_points():
    rows = normalise(pd.DataFrame(decode_rows()))
    empty = rows.iloc[0:0]
    assert all(headline.read(empty) is None for headline in HEADLINES)
    assert length(1024) == "1K" and length(2**20) == "1M" and length(3000) == "3000"


def test_the_block_is_replaced_between_its_markers_and_missing_markers_are_named():
    text = f"intro\n{START} old -->\nold\n{END}\noutro\n"
    assert replace_block(text, f"{START} -->\nnew\n{END}") == (
        f"intro\n{START} -->\nnew\n{END}\noutro\n"
    )
    with pytest.raises(BlockError, match="NOTES.md has no results block"):
        replace_block("no block here", "x", "NOTES.md")


def test_check_exits_1_when_the_block_differs_and_write_makes_it_pass(tmp_path, capsys):
    results = write_results(tmp_path / "results", decode_rows())
    readme = tmp_path / "README.md"
    readme.write_text(f"# r\n\n{START} -->\n| typed | by hand |\n{END}\n")
    common = ["--results", str(results), "--readme", str(readme), "--reports", str(tmp_path)]
    assert main([*common, "--check"]) == 1
    assert "differs" in capsys.readouterr().err
    assert main(common) == 0
    assert main([*common, "--check"]) == 0
    assert "| typed | by hand |" not in readme.read_text()


def test_the_build_writes_the_block_and_only_when_asked(tmp_path):
    results = write_results(tmp_path / "results", decode_rows())
    readme = tmp_path / "README.md"
    original = f"# r\n\n{START} -->\n{END}\n"
    readme.write_text(original)
    build_reports(str(results), str(tmp_path / "out"), dpi=30)
    assert readme.read_text() == original
    build_reports(str(results), str(tmp_path / "out"), dpi=30, readme=str(readme))
    written = readme.read_text()
    assert "decode ms per token" in written and "(../out/index.md)" not in written
    assert "](out/index.md)" in written  # links are relative to the README
    assert parse_args([]).readme == "README.md"  # the bare command writes it
    assert parse_args(["--results", "runs", "--out", "runs/reports"]).readme is None
    assert parse_args(["--no-readme"]).readme is None


def test_a_missing_readme_or_results_folder_is_named(tmp_path, capsys):
    assert main(["--readme", str(tmp_path / "nope.md")]) == 2
    assert "--readme" in capsys.readouterr().err
    (tmp_path / "README.md").write_text("x")
    assert main(["--readme", str(tmp_path / "README.md"), "--results", str(tmp_path / "r")]) == 2
    assert "--results" in capsys.readouterr().err

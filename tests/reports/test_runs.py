"""Which runs a report draws (reports.runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reports.build import build_reports
from suites.rows.staleness import head_sha, staleness
from tests.reports.synthetic import ablation_rows, write_results

DPI = 30
REPO = Path(__file__).resolve().parents[2]


def test_a_file_that_mixes_grids_is_drawn_as_one_run_per_grid(tmp_path):
    """Files written before one grid per run file could hold a --quick run resumed by a
    default one: the report draws one of them, with one reproduce command, not both."""
    hashes = [row for row in ablation_rows() if row["suite"] == "hashes"]
    quick = [
        dict(row, mode="quick", d_model=32, grid_points=len(hashes), point_key=f"q{i}")
        for i, row in enumerate(hashes)
    ]
    default = [
        dict(
            row,
            mode="default",
            grid_points=len(hashes),
            point_key=f"d{i}",
            timestamp_utc="2024-05-09T12:00:00Z",
        )
        for i, row in enumerate(hashes)
    ]
    results = write_results(tmp_path / "results", quick + default)
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert "| hashes  | 4        | 4    |" in markdown  # the counts: one grid's 4 points
    commands = [line for line in markdown.splitlines() if "suites.run hashes" in line]
    assert commands and not any("--quick" in line for line in commands)
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "d_model 32" not in svg and "smoke" not in svg


def _hashes_at(sha: str, dirty: bool = False) -> list[dict]:
    return [
        dict(row, git_sha=sha, git_dirty=dirty)
        for row in ablation_rows()
        if row["suite"] == "hashes"
    ]


def _hashes_section(markdown: str) -> str:
    start = markdown.index("## Hash rounds")
    return markdown[start : markdown.index("\n## ", start + 1)]


def test_a_run_of_the_model_code_at_head_reads_current_and_its_section_says_nothing(tmp_path):
    results = write_results(tmp_path / "results", _hashes_at(head_sha()))
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert "code since" in markdown and "| current" in markdown
    assert "Not the code as it now stands" not in _hashes_section(markdown)


def test_a_run_of_older_model_code_says_so_in_the_run_table_and_under_its_section(tmp_path):
    # The first commit that touched the model: every later model commit came after it.
    first = subprocess.run(
        ["git", "rev-list", "--max-parents=0", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    code = staleness([first])
    assert code.state == "stale" and code.commits_since and code.commits_since > 0
    results = write_results(tmp_path / "results", _hashes_at(first))
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert f"| {code.label()}" in markdown
    note = _hashes_section(markdown).splitlines()[2]
    assert note.startswith("> Not the code as it now stands: drawn from hashes_synthetic")
    assert f"at {first[:7]} ({code.label()} before this code)" in note


def test_an_unknown_or_dirty_run_says_which(tmp_path):
    unknown = write_results(tmp_path / "unknown", _hashes_at("0123456789abcdef"))
    (report,) = build_reports(str(unknown), str(tmp_path / "out1"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert "| unknown" in markdown and "unknown in this clone" in _hashes_section(markdown)
    dirty = write_results(tmp_path / "dirty", _hashes_at(head_sha(), dirty=True))
    (report,) = build_reports(str(dirty), str(tmp_path / "out2"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert "| dirty tree" in markdown and "uncommitted changes" in _hashes_section(markdown)


def test_a_run_of_some_of_a_grids_models_is_never_complete():
    """``--train`` runs a few of the quality grid's models: drawing it as the newest
    complete run would hide every other model's rows."""
    import pandas as pd

    from reports.runs import select_runs

    def rows(run_id: str, stamp: str, argv) -> list[dict]:
        return [
            {
                "suite": "quality",
                "run_id": run_id,
                "point_key": f"{run_id}{i}",
                "grid_points": 2,
                "status": "ok",
                "timestamp": pd.Timestamp(stamp),
                "num_threads": 2,
                "argv": argv,
                "git_sha": "abc",
                "git_dirty": False,
            }
            for i in range(2)
        ]

    full = rows("full", "2026-01-01", ["python", "-m", "suites.run", "quality"])
    some = rows("some", "2026-02-01", '["python", "-m", "suites.run", "quality", "--train", "x"]')
    frame = pd.DataFrame(full + some)
    _, chosen = select_runs(frame)
    assert list(chosen["run"].str.split(" · ").str[0]) == ["full"]
    assert not chosen["complete"].isna().any()
    _, everything = select_runs(frame, "all")
    names = everything["run"].str.split(" · ").str[0]
    assert dict(zip(names, everything["complete"], strict=True)) == {
        "full": True,
        "some": False,
    }

"""End to end: python -m reports.build on synthetic results (tests/reports/synthetic.py).

Figures are drawn at a low --dpi to keep the tests fast; the code path is the same.
"""

import re
from pathlib import Path

import pytest

from reports.build import build_reports, main
from tests.reports.synthetic import (
    all_rows,
    history_rows,
    memory_rows,
    time_rows,
    write_results,
)

DPI = 30
ALL_FIGURES = {"memory_peak", "memory_saved", "time_vs_length", "hashes_ablation",
               "chunks_ablation", "reversible_depth", "peers_normalised", "scale",
               "quality_table2", "quality_bits_per_byte", "ci_history", "efficiency_vs_length"}


def test_synthetic_rows_cover_every_status_and_suite():
    rows = all_rows()
    assert {row["status"] for row in rows} == {"ok", "oom", "timeout", "error", "skipped"}
    assert {row["suite"] for row in rows} == {"memory", "time", "hashes", "chunks",
                                              "reversible", "peers", "scale", "quality"}


def _figures(report: Path) -> set[str]:
    return {path.stem for path in (report / "figures").glob("*.png")}


def _assert_figures_written(report: Path) -> None:
    """Every figure the report shows exists as non-empty PNG and SVG, and nothing else."""
    markdown = (report / "report.md").read_text()
    html = (report / "report.html").read_text()
    shown = set(re.findall(r"\(figures/([\w-]+)\.png\)", markdown))
    assert shown == _figures(report)
    for stem in shown:
        for suffix in ("png", "svg"):
            assert (report / "figures" / f"{stem}.{suffix}").stat().st_size > 0
        assert f'src="figures/{stem}.svg"' in html


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("full")
    results = write_results(root / "results", all_rows(), history_rows(), malformed=True)
    (report,) = build_reports(str(results), str(root / "out"), theme="paper", dpi=DPI)
    return report


def test_full_report_has_every_figure(full_report):
    assert full_report.name == "paper_test-cpu-model-9-2-00ghz_2024-05-03"
    assert _figures(full_report) == ALL_FIGURES
    _assert_figures_written(full_report)


def test_full_report_text(full_report):
    markdown = (full_report / "report.md").read_text()
    for fact in ("| device", "| accelerator", "| driver", "| torch", "| CPU", "results git sha",
                 "results dated", "0123456789"):
        assert fact in markdown
    assert "| all        | 134      | 123  | 6     | 2         | 1       | 2         |" in markdown
    assert "RuntimeError: synthetic failure" in markdown
    assert "python -m suites.run memory --device cpu --out" in markdown
    assert "No results for suites" not in markdown and "omitted" not in markdown
    # failures are spelt out where a number would be, and the crossovers are tabulated
    assert "| transformer-full | train_step | 91.1  | 154    | 373    | OOM    | skipped |" in (
        markdown)
    assert "| pass=fwd_bwd | LSH-1        | transformer-full | 998" in markdown
    # published numbers are labelled with source and hardware, as published
    assert "Source: FlashAttention paper (Dao et al., NeurIPS 2022). Hardware: NVIDIA A100" in (
        markdown)
    assert "| 8K       | 215                     | 118.5" in markdown
    # CI history: the failed deterministic gate and its limit, and the recorded command
    assert "| saved_bytes_slope_lsh    | 2        | log-log slope | fail     | <= 1.15" in (
        markdown)
    assert "python -m suites.ci\npython -m reports.build" in markdown


def test_report_without_some_suites(tmp_path):
    results = write_results(tmp_path / "results", memory_rows() + time_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    assert _figures(report) == {"memory_peak", "memory_saved", "time_vs_length",
                                "efficiency_vs_length"}
    _assert_figures_written(report)
    markdown = (report / "report.md").read_text()
    assert "No results for suites: hashes, chunks, reversible, peers, scale, quality" in markdown
    for title in ("Hash rounds", "Chunk size", "Peer implementations", "CI performance history"):
        assert f"> {title}: omitted, no " in markdown


def test_few_points_and_failure_only_suites(tmp_path):
    one_length = [r for r in memory_rows() if r["seq_len"] == 4096]  # one L, one OOM model
    failed_chunks = [dict(r, suite="chunks", status="error", error="boom") for r in one_length]
    results = write_results(tmp_path / "results", one_length + failed_chunks)
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    assert _figures(report) == {"memory_peak", "memory_saved"}
    _assert_figures_written(report)
    assert "> Chunk size: omitted" in (report / "report.md").read_text()


def test_one_report_per_hardware_and_cli_filter(tmp_path, capsys):
    gpu = [dict(r, device="cuda", gpu_name="NVIDIA H200", driver="550.1", cuda="12.4")
           for r in time_rows()]
    results = write_results(tmp_path / "results", time_rows() + gpu)
    out = tmp_path / "out"
    main(["--results", str(results), "--out", str(out), "--dpi", str(DPI), "--hardware", "h200"])
    assert [p.name for p in out.iterdir()] == ["reformer_nvidia-h200_2024-05-01"]
    markdown = (out / "reformer_nvidia-h200_2024-05-01" / "report.md").read_text()
    assert "| accelerator         | NVIDIA H200" in markdown
    assert "--hardware h200" in markdown  # the build command is part of every reproduction
    assert "wrote" in capsys.readouterr().out
    main(["--results", str(results), "--out", str(out), "--dpi", str(DPI)])
    assert len(list(out.iterdir())) == 2


def test_rebuild_removes_figures_of_vanished_sections(tmp_path):
    results = write_results(tmp_path / "results", time_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    stale = report / "figures" / "peers_normalised.png"
    stale.write_bytes(b"old")
    assert build_reports(str(results), str(tmp_path / "out"), dpi=DPI) == [report]
    assert not stale.exists()


def test_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no result rows"):
        build_reports(str(tmp_path / "empty"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="--results"):
        build_reports(str(tmp_path / "missing"), str(tmp_path / "out"))
    results = write_results(tmp_path / "results", time_rows()[:2])
    with pytest.raises(SystemExit, match="matches none of the hardware"):
        build_reports(str(results), str(tmp_path / "out"), hardware="tpu")
    with pytest.raises(SystemExit):
        main(["--dpi", "0"])


def test_minimal_rows_unknown_status_and_unusable_history(tmp_path, caplog):
    suites = ("memory", "time", "hashes", "chunks", "reversible", "peers", "scale", "quality")
    rows = [{"suite": s, "model": "m", "status": "ok", "seq_len": 1024, "peak_mb": 10.0,
             "t_median_ms": 3.0} for s in suites]
    rows += [{"suite": "memory", "model": "m", "status": "exploded", "seq_len": 2048}]
    results = write_results(tmp_path / "results", rows, history=[{"foo": 1}])
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    _assert_figures_written(report)
    markdown = (report / "report.md").read_text()
    assert "history.jsonl has rows but none with a figure name" in markdown
    assert "has an ok point of our LSH attention" in markdown
    assert "counted as error" in caplog.text

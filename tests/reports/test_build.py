"""End to end: python -m reports.build on synthetic results (tests/reports/synthetic.py).

Figures are drawn at a low --dpi to keep the tests fast; the code path is the same.
"""

import re
from pathlib import Path

import pytest

from reports.build import ReportError, build_reports, main
from tests.reports.synthetic import (
    all_rows,
    history_rows,
    memory_rows,
    time_rows,
    write_results,
)

DPI = 30
ALL_FIGURES = {
    "memory_peak",
    "memory_saved",
    "time_vs_length",
    "hashes_ablation",
    "chunks_ablation",
    "reversible_depth",
    "peers_normalised",
    "scale",
    "decode",
    "quality_table2",
    "quality_bits_per_byte",
    "ci_history",
    "efficiency_vs_length",
}


def test_synthetic_rows_cover_every_status_and_suite():
    rows = all_rows()
    assert {row["status"] for row in rows} == {"ok", "oom", "timeout", "error", "skipped"}
    assert {row["suite"] for row in rows} == {
        "memory",
        "time",
        "hashes",
        "chunks",
        "reversible",
        "peers",
        "scale",
        "decode",
        "quality",
    }


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
    for fact in (
        "| device",
        "| accelerator",
        "| driver",
        "| torch",
        "| CPU",
        "results git sha",
        "results dated",
        "0123456789",
    ):
        assert fact in markdown
    assert (
        "| all        | 231      | 217  | 7     | 2         | 1       | 4         | 5" in markdown
    )
    assert "RuntimeError: synthetic failure" in markdown
    assert "python -m suites.run memory --device cpu --out" in markdown
    assert "No results for suites" not in markdown and "omitted" not in markdown
    # failures are spelt out where a number would be, and the crossovers are tabulated
    assert (
        "| transformer-full | 2          | train_step | 91.1  | 154    | 373    | OOM     "
        "| skipped |"
    ) in markdown
    assert "| forward + backward | LSH-1        | transformer-full | 998" in markdown
    # published numbers are labelled with source and hardware, as published
    assert "Source: FlashAttention paper (Dao et al., NeurIPS 2022). Hardware: NVIDIA A100" in (
        markdown
    )
    assert "| 8K       | 215                     | 118.5" in markdown
    # CI history: the failed deterministic gate and its limit, and the recorded command
    (gate,) = [line for line in markdown.splitlines() if line.startswith("| saved_bytes_slope")]
    assert [cell.strip() for cell in gate.split("|")[1:-1]] == [
        "saved_bytes_slope_lsh",
        "ci",  # the machine kind: these rows name a host and no CPU
        "<= 1.15",
        "2",
        "fail",
        "sha3",
        "3",
    ]
    assert "python -m suites.ci\npython -m reports.build" in markdown


def test_report_without_some_suites(tmp_path):
    results = write_results(tmp_path / "results", memory_rows() + time_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    assert _figures(report) == {
        "memory_peak",
        "memory_saved",
        "time_vs_length",
        "efficiency_vs_length",
    }
    _assert_figures_written(report)
    markdown = (report / "report.md").read_text()
    assert (
        "No results for suites: hashes, chunks, reversible, peers, scale, decode, quality"
        in markdown
    )
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
    gpu = [
        dict(r, device="cuda", gpu_name="NVIDIA H200", driver="550.1", cuda="12.4")
        for r in time_rows()
    ]
    results = write_results(tmp_path / "results", time_rows() + gpu)
    out = tmp_path / "out"
    main(["--results", str(results), "--out", str(out), "--dpi", str(DPI), "--hardware", "h200"])
    assert [p.name for p in out.iterdir()] == ["reformer_nvidia-h200_2024-05-01"]
    markdown = (out / "reformer_nvidia-h200_2024-05-01" / "report.md").read_text()
    assert "| accelerator         | NVIDIA H200" in markdown
    assert "--hardware h200" in markdown  # the build command is part of every reproduction
    assert "wrote" in capsys.readouterr().out
    main(["--results", str(results), "--out", str(out), "--dpi", str(DPI)])
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2
    assert (out / "index.md").is_file()  # a build of every hardware lists them


def test_rebuild_removes_figures_of_vanished_sections(tmp_path):
    results = write_results(tmp_path / "results", time_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    stale = report / "figures" / "peers_normalised.png"
    stale.write_bytes(b"old")
    assert build_reports(str(results), str(tmp_path / "out"), dpi=DPI) == [report]
    assert not stale.exists()


def test_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="no result rows"):
        build_reports(str(tmp_path / "empty"), str(tmp_path / "out"))
    with pytest.raises(ReportError, match="--results"):
        build_reports(str(tmp_path / "missing"), str(tmp_path / "out"))
    results = write_results(tmp_path / "results", time_rows()[:2])
    with pytest.raises(ReportError, match="matches none of the hardware"):
        build_reports(str(results), str(tmp_path / "out"), hardware="tpu")
    with pytest.raises(SystemExit):
        main(["--dpi", "0"])


def test_minimal_rows_unknown_status_and_unusable_history(tmp_path, caplog):
    suites = ("memory", "time", "hashes", "chunks", "reversible", "peers", "scale", "quality")
    rows = [
        {
            "suite": s,
            "model": "m",
            "status": "ok",
            "seq_len": 1024,
            "peak_mib": 10.0,
            "t_median_ms": 3.0,
        }
        for s in suites
    ]
    rows += [{"suite": "memory", "model": "m", "status": "exploded", "seq_len": 2048}]
    results = write_results(tmp_path / "results", rows, history=[{"foo": 1}])
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    _assert_figures_written(report)
    markdown = (report / "report.md").read_text()
    assert "history.jsonl has rows but none with a figure name" in markdown
    assert "has an ok point of our LSH attention" in markdown
    assert "counted as error" in caplog.text


# -- every section, drawn from the runs chosen on purpose ----------------------------------

SECTION_TITLES = (
    "## Peak memory against length",
    "## Time against length",
    "## Hash rounds",
    "## Chunk size",
    "## Reversibility and depth",
    "## Peer implementations",
    "## Scale:",
    "## Quality:",
    "## CI performance history",
    "## Table 3 memory model",
)


def _svg_texts(path: Path) -> list[str]:
    texts = re.findall(r"<text[^>]*>(.*?)</text>", path.read_text(), flags=re.S)
    return [re.sub(r"<[^>]+>", "", text).strip() for text in texts]


def test_every_section_is_present_and_no_panel_says_nan(full_report):
    markdown = (full_report / "report.md").read_text()
    for title in SECTION_TITLES:
        assert title in markdown, title
    assert "omitted" not in markdown and "no point has an ok point" not in markdown
    for svg in (full_report / "figures").glob("*.svg"):
        texts = _svg_texts(svg)
        assert not [t for t in texts if re.search(r"\bnan\b", t, re.I)], (svg.name, texts)
        assert not [t for t in texts if "(MB)" in t], svg.name  # the data are MiB
    # every figure carries a title of its own (not only the report's caption)
    assert "Peak memory of one step against sequence length" in _svg_texts(
        full_report / "figures" / "memory_peak.svg"
    )
    assert all(len(_svg_texts(svg)) > 3 for svg in (full_report / "figures").glob("*.svg"))


def test_peers_are_normalised_to_our_rows_although_ours_record_a_version(full_report):
    markdown = (full_report / "report.md").read_text()
    section = markdown.split("## Peer implementations")[1].split("\n## ")[0]
    assert "peer-reformer-pytorch" in section and "attn-sdpa" in section
    assert "| peer-reformer-pytorch | reformer_pytorch.LSHSelfAttention | 1.4.4" in section
    assert "| 1.50          | 2               |" in section  # 15 ms / 10 ms, 80 / 40 MiB


def test_default_report_draws_the_newest_complete_run_of_each_suite(full_report):
    markdown = (full_report / "report.md").read_text()
    runs = markdown.split("*Environment, from the result rows.*")[1].split("*Runs drawn")[0]
    drawn = re.findall(r"^\| (\w+) +\| (\w+) +\|", runs, flags=re.M)[1:]
    assert sorted(drawn) == sorted(
        (s, f"{s}_synthetic")
        for s in (
            "chunks",
            "decode",
            "hashes",
            "memory",
            "peers",
            "quality",
            "reversible",
            "scale",
            "time",
        )
    )
    assert "time_old" not in markdown and "memory_quick" not in markdown
    assert "rows of other runs are not drawn" in markdown
    # the LSH-8 points of the drawn time run were measured under load: marked, with a note
    assert "| reformer-lsh-rev | 8          | 96 *" in markdown
    assert "| time       | 30       | 29   | 0     | 1         | 0       | 0         | 5" in (
        markdown
    )


def test_all_runs_on_request_without_mixing_them_on_one_line(tmp_path):
    results = write_results(tmp_path / "results", all_rows())
    (report,) = build_reports(str(results), str(tmp_path / "all"), dpi=DPI, runs="all")
    markdown = (report / "report.md").read_text()
    assert "time_old" in markdown and "memory_quick" in markdown
    titles = _svg_texts(report / "figures" / "memory_peak.svg")
    # the --quick rows (1 layer, d_model 32) are a panel of their own, not a jump in a line
    assert any("d_model 32" in t for t in titles) and any("d_model 64" in t for t in titles)
    assert any("num_threads 1" in t for t in _svg_texts(report / "figures" / "time_vs_length.svg"))
    (one,) = build_reports(str(results), str(tmp_path / "one"), dpi=DPI, run_ids=["time_old"])
    only = (one / "report.md").read_text()
    assert "time_old" in only and "memory_synthetic" not in only
    with pytest.raises(ReportError, match="no such run"):
        build_reports(str(results), str(tmp_path / "x"), run_ids=["nope"])


def test_seeds_are_stated_next_to_every_matrix(full_report):
    markdown = (full_report / "report.md").read_text()
    assert "*Ours: accuracy (%), 3 seeds per cell (mean ± standard deviation).*" in markdown
    assert "| LSH-4     | 0.3 ± 0.5  | 98.0 ± 2.0 |" in markdown
    assert "| Full      | 98.0 ± 2.0 | 92.8 ± 2.0 |" in markdown
    assert "3 seeds" in " ".join(_svg_texts(full_report / "figures" / "quality_table2.svg"))

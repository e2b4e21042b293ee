"""reports.build failing loud and rebuilding quietly: path errors are one line and exit 2,
no rows exit 1, a rebuild is byte-identical, and figures a reader can read (tick labels
on every log axis, panel titles in words, the grid in the caption, one line per model
and depth in the scale figure)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from reports.build import build_reports, main
from reports.render.palette import Palette
from reports.render.plotting import Panel, apply_theme, draw_panels, length_label, wrap_title
from reports.sections.scale import series_labels
from tests.reports.synthetic import ablation_rows, all_rows, quality_rows, write_results

DPI = 30


# -- exit statuses and one-line errors -----------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_a_results_folder_that_does_not_exist_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["--results", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "--results" in _one_line_error(capsys) and not (tmp_path / "o").exists()


def test_an_out_that_is_a_file_or_under_one_is_one_line_and_status_2(tmp_path, capsys):
    results = write_results(tmp_path / "results", ablation_rows())
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "below"):
        assert main(["--results", str(results), "--out", str(out), "--dpi", str(DPI)]) == 2
        assert f"--out {out}" in _one_line_error(capsys)
    assert a_file.read_text() == "not a folder"


def test_no_rows_is_status_1_and_an_unknown_run_is_status_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--results", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    assert "no result rows" in _one_line_error(capsys)
    results = write_results(tmp_path / "results", ablation_rows())
    argv = ["--results", str(results), "--out", str(tmp_path / "o"), "--run-id", "nope"]
    assert main(argv) == 2
    assert "--run-id nope" in _one_line_error(capsys)


# -- a rebuild is byte-identical -----------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_rebuild_from_the_same_rows_and_code_is_byte_identical(tmp_path):
    results = write_results(tmp_path / "results", all_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    first = _snapshot(report)
    assert any(name.endswith(".svg") for name in first)
    (again,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    assert again == report and _snapshot(report) == first
    markdown = (report / "report.md").read_text()
    assert "report built" not in markdown and "report code git sha" in markdown


# -- what the hash-rounds section draws ----------------------------------------------------


def test_a_hash_rounds_section_from_quality_rows_alone_says_so(tmp_path):
    results = write_results(tmp_path / "results", quality_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    markdown = (report / "report.md").read_text()
    assert "No results for suites: " in markdown
    assert "drawn from other suites' rows below: Hash rounds" in markdown
    assert "There are no hashes-suite rows, so the cost of more rounds is not drawn" in markdown
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "what more rounds cost" not in svg and "duplication accuracy" in svg


def test_a_hash_rounds_figure_without_quality_rows_promises_no_accuracy(tmp_path):
    results = write_results(tmp_path / "results", ablation_rows())
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "Hash rounds: what more rounds cost" in svg and "accuracy" not in svg


# -- readable figures ----------------------------------------------------------------------


def _labels(ax, axis: str) -> list[str]:
    """Tick labels a reader sees on one axis: non-empty, inside the view limits."""
    ax.figure.canvas.draw()
    target, (low, high) = (ax.yaxis, ax.get_ylim()) if axis == "y" else (ax.xaxis, ax.get_xlim())
    shown = []
    for ticks in (target.get_major_ticks(), target.get_minor_ticks()):
        for tick in ticks:
            text = tick.label1.get_text()
            if text and tick.label1.get_visible() and low <= tick.get_loc() <= high:
                shown.append(text)
    return shown


@pytest.mark.parametrize(
    "values",
    [[0.144, 0.148, 0.156, 0.172], [0.81, 0.95, 1.07, 1.19], [6.1, 20.4, 35.0, 71.0]],
)
def test_every_log_axis_shows_at_least_three_tick_labels(values):
    """Spans narrower than a decade (a smoke grid's numbers) got one label or none."""
    apply_theme()
    data = pd.DataFrame({"n_hashes": [1, 2, 4, 8], "mib": values, "model": "attn-lsh"})
    panel = Panel(data=data, x="n_hashes", y="mib", hue="model", logx=2, title="t")
    figure = draw_panels([[panel]], Palette(["attn-lsh"]))
    (ax,) = figure.axes
    assert len(_labels(ax, "y")) >= 3, _labels(ax, "y")
    assert _labels(ax, "x") == ["1", "2", "4", "8"]
    plt.close(figure)


def test_lengths_and_titles_read_as_words():
    assert [length_label(x) for x in (256, 1024, 131072, 2**20, 3000)] == [
        "256",
        "1K",
        "128K",
        "1M",
        "3000",
    ]
    title = "forward + backward, d_model 256, n_heads 4, seq_len 1024"
    assert wrap_title(title) == "forward + backward, d_model 256,\nn_heads 4, seq_len 1024"


def test_panel_titles_are_words_and_captions_name_the_grid(tmp_path):
    rows = [dict(row, mode="quick") for row in ablation_rows() if row["suite"] == "hashes"]
    results = write_results(tmp_path / "results", rows)
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    svg = (report / "figures" / "hashes_ablation.svg").read_text()
    assert "phase=" not in svg and "training step<" in svg
    assert "--quick smoke grid" in svg  # on the image itself
    markdown = (report / "report.md").read_text()
    assert "Grid: quick. The quick grid is a smoke run of tiny models" in markdown


def test_the_scale_figure_draws_each_depth_and_autocast_as_its_own_line(tmp_path):
    base = {"model": "reformer-lsh-rev", "n_layers": 2, "autocast": None}
    rows = pd.DataFrame(
        [
            base,
            {**base, "n_layers": 12},
            {**base, "autocast": "bfloat16"},
        ]
    )
    assert list(series_labels(rows)) == [
        "reformer-lsh-rev, 2 layers",
        "reformer-lsh-rev, 12 layers",
        "reformer-lsh-rev, 2 layers, bfloat16 autocast",
    ]
    assert list(series_labels(rows.iloc[:1])) == ["reformer-lsh-rev"]


def test_the_committed_scale_rows_draw_three_lines_and_no_offset_label(tmp_path):
    """The 2-layer, 12-layer and bf16 points of the 2^17-2^20 scale run: three lines (each
    x at most once per line), and the longest-length panel labels lengths, not '1e6'."""
    rows = []
    for seq_len, layers, cast, peak in (
        (2**17, 2, None, 1869.5),
        (2**17, 2, "bfloat16", 1589.6),
        (2**18, 2, None, 3542.0),
        (2**18, 12, None, 3544.6),
        (2**19, 2, None, 6861.1),
        (2**20, 2, None, 12993.7),
    ):
        row = {
            "suite": "scale",
            "model": "reformer-lsh-rev",
            "status": "ok",
            "seq_len": seq_len,
            "n_layers": layers,
            "phase": "train_step",
            "device": "cpu",
            "cpu_model": "Test CPU",
            "peak_mib": peak,
            "t_median_ms": peak * 100,
            "max_memory_gb": 16.0,
            "timestamp_utc": "2024-05-01T12:00:00Z",
            "run_id": "scale_one",
            "point_key": f"{seq_len}-{layers}-{cast}",
        }
        if cast:
            row["autocast"] = cast
        rows.append(row)
    results = tmp_path / "results"
    results.mkdir()
    (results / "scale_one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (report,) = build_reports(str(results), str(tmp_path / "out"), dpi=DPI)
    svg = (report / "figures" / "scale.svg").read_text()
    for line in ("2 layers", "12 layers", "2 layers, bfloat16 autocast"):
        assert f"reformer-lsh-rev, {line}<" in svg
    assert "1M" in svg and "1e6" not in svg and "1048576" not in svg


def test_a_garbage_ledger_file_is_skipped_with_a_warning(tmp_path, caplog):
    from reports.sections.ledger import newest_ledger

    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "ledger_torn.json").write_text('{"entries": [')
    (tmp_path / "ledger" / "ledger_list.json").write_text("[1, 2]")
    assert newest_ledger(tmp_path) is None
    assert caplog.text.count("not a ledger file, skipped") == 2


def test_a_folder_of_garbage_only_is_no_rows_status_1(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "junk.jsonl").write_bytes(b"not json\n[1, 2]\n\x00\xff\n")
    assert main(["--results", str(results), "--out", str(tmp_path / "o")]) == 1
    assert "no result rows" in capsys.readouterr().err


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

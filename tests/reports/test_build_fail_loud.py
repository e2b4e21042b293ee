"""reports.build failing loud and rebuilding quietly: path errors are one line and exit 2,
no rows exit 1, and a rebuild is byte-identical. What the figures show a reader is tested
beside the module that draws it (tests/reports/render, tests/reports/sections)."""

from __future__ import annotations

from pathlib import Path

from reports.build import build_reports, main
from tests.reports.synthetic import ablation_rows, all_rows, write_results

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


def test_a_folder_of_garbage_only_is_no_rows_status_1(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "junk.jsonl").write_bytes(b"not json\n[1, 2]\n\x00\xff\n")
    assert main(["--results", str(results), "--out", str(tmp_path / "o")]) == 1
    assert "no result rows" in capsys.readouterr().err


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


def test_a_full_disk_is_one_line_and_status_4_and_leaves_no_truncated_file(
    tmp_path, capsys, monkeypatch
):
    """The disk fills while a figure is written: no traceback, an exit status of its own
    (not 1, "no rows"), and no truncated PNG or half-written file left behind."""
    import errno

    from matplotlib.figure import Figure

    results = write_results(tmp_path / "results", ablation_rows())
    real_savefig = Figure.savefig

    def full_disk(self, fname, *args, **kwargs):
        if ".png" in str(fname):
            Path(fname).write_bytes(b"\x89PNG half")  # what a filling disk leaves
            raise OSError(errno.ENOSPC, "No space left on device", str(fname))
        return real_savefig(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", full_disk)
    out = tmp_path / "out"
    assert main(["--results", str(results), "--out", str(out), "--dpi", str(DPI)]) == 4
    err = _one_line_error(capsys)
    assert "No space left on device" in err and "written whole or not at all" in err
    leftovers = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in leftovers if p.suffix == ".png" or p.name.endswith(".partial")]


def test_a_dpi_no_figure_can_be_drawn_at_is_refused_as_an_argument(capsys, tmp_path):
    import pytest

    with pytest.raises(SystemExit) as exited:
        main(["--results", str(tmp_path), "--dpi", "100000"])
    assert exited.value.code == 2 and "--dpi 100000 is too large" in capsys.readouterr().err

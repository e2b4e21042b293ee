"""The efficiency section: MFU against length for the time and peers suites."""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.load import latest_points, normalise
from reports.render.document import Figure, Table
from reports.render.palette import Palette
from reports.render.plotting import apply_theme
from reports.sections.efficiency import INVALID, build_efficiency, report_peaks

BASE = {
    "schema_version": 1,
    "run_id": "time_cuda_x",
    "device": "cuda",
    "gpu_name": "NVIDIA H200",
    "dtype": "bfloat16",
    "phase": "fwd_bwd",
    "status": "ok",
    "timestamp_utc": "2026-11-29T12:00:00Z",
    "d_model": 256,
    "n_heads": 4,
    "bucket_size": 64,
    "peak_tflops": 989.5,
    "peak_source": "datasheet",
}


def _rows(with_mfu: bool = True) -> pd.DataFrame:
    rows = []
    for seq_len in (4096, 16384):
        for model, attention, backend, mfu in (
            ("attn-lsh", "lsh", "torch", 0.01),
            ("attn-lsh", "lsh", "triton", 0.2),
            ("attn-sdpa", "sdpa", None, 0.4),
        ):
            rows.append(
                BASE
                | {
                    "suite": "time",
                    "model": model,
                    "attention": attention,
                    "backend": backend,
                    "n_hashes": 4 if attention == "lsh" else None,
                    "seq_len": seq_len,
                    "batch": 2**15 // seq_len,
                    "point_key": f"{model}{backend}{seq_len}",
                    "tflops_per_s": mfu * 989.5,
                    "mfu": mfu if with_mfu else None,
                }
            )
    return latest_points(normalise(pd.DataFrame(rows)))


def _context(rows: pd.DataFrame, tmp_path) -> ReportContext:
    apply_theme()
    return ReportContext(
        rows=rows,
        history=pd.DataFrame(),
        out_dir=tmp_path,
        palette=Palette(rows["model"].astype(str)),
        results_arg="results",
        build_command="python -m reports.build",
    )


def test_mfu_is_drawn_and_tabulated_per_series_with_the_backend(tmp_path):
    blocks = build_efficiency(_context(_rows(), tmp_path))
    assert blocks is not None
    figure = next(b for b in blocks if isinstance(b, Figure))
    assert (tmp_path / "figures" / f"{figure.stem}.png").exists()
    (table,) = [b for b in blocks if isinstance(b, Table)]
    assert set(table.frame.index) == {"LSH-4 (torch)", "LSH-4 (triton)", "attn-sdpa"}
    assert table.frame.loc["LSH-4 (triton)", "L=16384"] == "20"  # percent of peak
    assert table.frame.loc["attn-sdpa", "L=4096"] == "40"
    assert "bfloat16: 989.5 TFLOP/s (datasheet)" in blocks[0].text


def test_no_section_without_a_peak(tmp_path):
    rows = _rows(with_mfu=False).assign(peak_tflops=None, peak_source=None)
    assert build_efficiency(_context(rows, tmp_path)) is None


def _cpu_runs() -> pd.DataFrame:
    """Three CPU runs that measured their own GEMM peak at 0.09, 0.12 and 0.18 TFLOP/s;
    the same 0.06 TFLOP/s step reads 67%, 50% and 33% of them."""
    rows = []
    for run, peak in (("time_a", 0.09), ("time_b", 0.12), ("peers_c", 0.18)):
        for seq_len, rate in ((1024, 0.06), (4096, 0.15)):
            rows.append(
                BASE
                | {
                    "suite": run.split("_")[0],
                    "run_id": run,
                    "device": "cpu",
                    "gpu_name": None,
                    "dtype": "float32",
                    "model": "attn-sdpa",
                    "attention": "sdpa",
                    "seq_len": seq_len,
                    "batch": 1,
                    "point_key": f"{run}{seq_len}",
                    "tflops_per_s": rate,
                    "peak_tflops": peak,
                    "peak_source": "measured_gemm_4096",
                    "mfu": rate / peak,
                }
            )
    return latest_points(normalise(pd.DataFrame(rows)))


def test_every_run_is_divided_by_one_peak_the_median_of_the_runs_and_it_is_stated(tmp_path):
    rows = _cpu_runs()
    assert report_peaks(rows)[("float32", "measured_gemm_4096")].tflops == 0.12
    blocks = build_efficiency(_context(rows, tmp_path))
    assert blocks is not None
    tables = [b for b in blocks if isinstance(b, Table)]
    # 0.06 / 0.12 in both suites, though their runs measured 0.09 and 0.18
    assert [t.frame.loc["attn-sdpa", "L=1024"] for t in tables] == ["50", "50"]
    text = blocks[0].text
    assert (
        "float32: 0.12 TFLOP/s (measured_gemm_4096; the median of 3 runs' own, 0.09-0.18)" in text
    )


def test_a_point_above_100_percent_is_drawn_as_invalid_never_as_a_value(tmp_path):
    rows = _cpu_runs()  # 0.15 TFLOP/s at 4K is 125% of the 0.12 peak
    blocks = build_efficiency(_context(rows, tmp_path))
    assert blocks is not None
    tables = [b for b in blocks if isinstance(b, Table)]
    assert all(t.frame.loc["attn-sdpa", "L=4096"] == INVALID for t in tables)
    assert all("above 100%" in t.caption for t in tables)
    assert "3 points read above 100%" in blocks[0].text
    svg = (tmp_path / "figures" / "efficiency_vs_length.svg").read_text()
    assert "4K" not in svg  # the only 4K points are invalid: no tick, no point there


def test_commands_quote_the_recorded_command_line_and_rebuild_only_for_older_rows(tmp_path):
    rows = _rows()
    argv = ["python", "-m", "suites.run", "time", "--device", "cuda", "--out", "my results"]
    recorded = rows.assign(argv=[argv] * len(rows))
    assert _context(recorded, tmp_path).commands("time") == (
        "python -m suites.run time --device cuda --out 'my results'",
        "python -m reports.build",
    )
    # Rows written before argv existed: the suite's command is spelt out from the fields.
    (rebuilt, _) = _context(rows, tmp_path).commands("time")
    assert rebuilt.startswith("python -m suites.run time --device") and "--out results" in rebuilt

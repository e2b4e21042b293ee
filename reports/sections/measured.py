"""Report tables: environment, point counts, measured numbers, Table 3 model, published.

Measured tables are in paper form: one line per model (and whatever else the suite varies),
one column per length, failures spelt out (OOM, timeout, error, skipped) where a number
would be.
"""

from __future__ import annotations

import pandas as pd

from reports.context import ReportContext
from reports.load import CONFIG_COLUMNS, STATUSES
from reports.render.document import Block, Heading, Note, Paragraph, Table, fmt
from reports.sections.analytic import table3_memory
from reports.sections.published import published_tables
from suites.rows.busy import MARK, RULE, row_is_busy

# Metrics that load inflates (memory does not depend on it); their cells carry MARK when
# the point was measured under load (suites.rows.busy).
LOAD_SENSITIVE = ("t_median_ms", "tokens_per_s", "tflops_per_s")
BUSY_NOTE = (
    f"measured with the {RULE}: times inflated, not comparable with an idle run's "
    "(memory is unaffected)."
)
SUITE_METRICS = {
    "memory": (("peak_mib", "peak memory (MiB)"), ("saved_mib", "saved for backward (MiB)")),
    "time": (("t_median_ms", "median time per step (ms)"),),
}
DEFAULT_METRICS = (("t_median_ms", "median time per step (ms)"), ("peak_mib", "peak memory (MiB)"))
ANALYTIC_SUITES = ("memory", "reversible", "scale")
_FAILED = {"oom": "OOM", "timeout": "timeout", "error": "error", "skipped": "skipped"}


def _values(series: pd.Series, limit: int = 4) -> str:
    values = [str(v) for v in dict.fromkeys(series.dropna().tolist()) if str(v) != ""]
    if not values:
        return "n/a"
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def environment_table(rows: pd.DataFrame, built: dict[str, str]) -> Table:
    cuda = rows[rows["device"].astype(str).str.startswith("cuda")]
    dirty = rows.loc[rows["git_dirty"].isin([True, "true", "True"]), "git_sha"]
    shas = _values(rows["git_sha"].astype(str).str[:10].where(rows["git_sha"].notna()))
    stamps = rows["timestamp"].dropna()
    facts = {
        "device": _values(rows["device"]),
        "accelerator": _values(cuda["gpu_name"]) if not cuda.empty else "none (CPU)",
        "driver": _values(cuda["driver"]) if not cuda.empty else "n/a",
        "CUDA": _values(cuda["cuda"]) if not cuda.empty else "n/a",
        "CPU": f"{_values(rows['cpu_model'])} ({_values(rows['n_cpus'].map(fmt))} CPUs)",
        "threads": _values(rows["num_threads"].map(fmt)),
        "host": _values(rows["host"]),
        "torch": _values(rows["torch"]),
        "python": _values(rows["python"]),
        "results git sha": shas + (" (some from a dirty tree)" if not dirty.empty else ""),
        "results dated": (
            f"{stamps.min():%Y-%m-%d %H:%M} to {stamps.max():%Y-%m-%d %H:%M} UTC"
            if not stamps.empty
            else "n/a"
        ),
        "memory method": _values(rows["memory_method"]),
        **built,
    }
    frame = pd.DataFrame({"value": list(facts.values())}, index=list(facts))
    return Table(frame, "Environment, from the result rows.")


def counts_table(rows: pd.DataFrame, raw_rows: int) -> Table:
    counts = pd.crosstab(rows["suite"], rows["status"]).reindex(columns=STATUSES, fill_value=0)
    counts.insert(0, "points", counts.sum(axis=1))
    measured = rows[rows["status"] != "skipped"]
    busy = [row_is_busy(r) for r in measured.to_dict("records")]
    counts["under load"] = (
        measured[busy].groupby("suite").size().reindex(counts.index, fill_value=0)
    )
    counts.loc["all"] = counts.sum()
    superseded = raw_rows - len(rows)
    return Table(
        counts.astype(int).astype(str),
        f"Measured points per suite and status (newest row per point; {superseded} "
        f"older rows of re-measured points not counted). Under load: {BUSY_NOTE}",
    )


def errors_table(rows: pd.DataFrame, limit: int = 10) -> Table | None:
    failed = rows[rows["status"].isin(["error", "timeout"])]
    if failed.empty:
        return None
    # Messages may carry terminal colour codes and tracebacks' newlines: one clean line each.
    message = (
        failed["error"]
        .fillna("(no message)")
        .astype(str)
        .str.replace(r"\x1b\[[0-9;]*[A-Za-z]", "", regex=True)
        .str.replace(r"\s+", " ", regex=True)
        .str.slice(0, 160)
    )
    table = (
        failed.assign(message=message)
        .groupby(["suite", "status", "message"])
        .agg(points=("model", "size"), models=("model", lambda m: _values(m, 3)))
        .reset_index()
        .sort_values("points", ascending=False)
        .head(limit)
    )
    return Table(table, "Error and timeout messages (most frequent first).", index=False)


def paper_form(rows: pd.DataFrame, metric: str, model_order: tuple[str, ...] = ()) -> pd.DataFrame:
    """Models (and fields varying within a model) down, lengths across; failures named.

    Returns a flat frame: the line-identifying columns first, then one column per length.
    Models come in ``model_order`` (the report's legend order), then alphabetically.
    """
    ignore = {"seq_len", "model", "n_buckets", "seed"}
    if rows["suite"].eq("time").all():
        ignore.add("batch")  # fixed tokens per batch: batch follows L
    index = ["model"] + [
        c
        for c in CONFIG_COLUMNS
        if c not in ignore
        # A field a failed point's row lacks (num_threads) does not split a line.
        and (rows.groupby("model", dropna=False)[c].nunique(dropna=True) > 1).any()
    ]
    if "autocast" in rows and rows["autocast"].notna().any():
        # The scale suite's mixed-precision points are lines of their own (null: none).
        rows = rows.assign(autocast=rows["autocast"].fillna("none"))
        index.append("autocast")
    marked = metric in LOAD_SENSITIVE

    def cell(r: pd.Series) -> str:
        if r["status"] != "ok":
            return _FAILED.get(r["status"], "?")
        return fmt(r[metric]) + (f" {MARK}" if marked and row_is_busy(r.to_dict()) else "")

    cells = rows.apply(cell, axis=1)
    labels = rows[index].map(lambda v: "" if pd.isna(v) else fmt(v))
    lengths = rows["seq_len"]
    table = (
        labels.assign(L=lengths, cell=cells)
        .dropna(subset=["L"])
        .drop_duplicates(subset=[*index, "L"], keep="last")
        .pivot(index=index, columns="L", values="cell")
    )
    table.columns = [fmt(length) for length in table.columns]
    rank = {model: i for i, model in enumerate(model_order)}
    table = (
        table.reset_index()
        .fillna("")
        .sort_values(
            index,
            key=lambda column: (
                column.map(lambda m: (rank.get(m, len(rank)), m))
                if column.name == "model"
                else _numeric_if_possible(column)
            ),
        )
    )
    metric_cells = table.columns[len(index) :]
    return table[(table[metric_cells] != "").any(axis=1)].reset_index(drop=True)


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """Sort 32 < 64 < 128 for numbers written as text; text stays text."""
    numbers = pd.to_numeric(column, errors="coerce")
    return numbers if numbers.notna().all() else column


def measured_blocks(ctx: ReportContext, suites: list[str]) -> list[Block]:
    blocks: list[Block] = []
    for suite in suites:
        if suite == "quality":
            continue  # the quality section tabulates it
        rows = ctx.suite(suite)
        for metric, label in SUITE_METRICS.get(suite, DEFAULT_METRICS):
            if rows.loc[rows["status"] == "ok", metric].notna().any():
                table = paper_form(rows, metric, ctx.palette.order)
                marked = (
                    metric in LOAD_SENSITIVE
                    and table.map(lambda c: str(c).endswith(f" {MARK}")).any().any()
                )
                blocks.append(
                    Table(
                        table,
                        f"{suite}: {label}; columns are sequence lengths."
                        + (f" {MARK} {BUSY_NOTE}" if marked else ""),
                        index=False,
                    )
                )
    return blocks


def analytic_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 3's estimate beside the measured peak for every ok memory point."""
    found = []
    needed = [
        "batch",
        "seq_len",
        "d_model",
        "d_ff",
        "n_heads",
        "n_layers",
        "attention",
        "reversible",
        "dtype",
        "peak_mib",
    ]
    usable = rows[rows["suite"].isin(ANALYTIC_SUITES) & (rows["status"] == "ok")]
    for row in usable.dropna(subset=needed).to_dict("records"):
        try:
            estimate = table3_memory(
                batch=row["batch"],
                seq_len=row["seq_len"],
                d_model=row["d_model"],
                d_ff=row["d_ff"],
                n_heads=row["n_heads"],
                n_layers=row["n_layers"],
                attention=row["attention"],
                reversible=row["reversible"] in (True, "true", 1),
                ff_chunks=row["ff_chunks"] if pd.notna(row["ff_chunks"]) else 1,
                n_hashes=row["n_hashes"] if pd.notna(row["n_hashes"]) else 1,
                bucket_size=row["bucket_size"] if pd.notna(row["bucket_size"]) else 1,
            )
            analytic_mib = estimate.mebibytes(row["dtype"])
        except ValueError:
            continue  # a config outside the model (unknown attention or dtype)
        found.append(
            {
                "suite": row["suite"],
                "model": row["model"],
                "phase": row["phase"],
                "L": fmt(row["seq_len"]),
                "batch": fmt(row["batch"]),
                "layers": fmt(row["n_layers"]),
                "Table 3 row": estimate.row + ("" if estimate.in_table3 else " *"),
                "analytic (MiB)": fmt(analytic_mib),
                "peak (MiB)": fmt(row["peak_mib"]),
                "peak / analytic": fmt(row["peak_mib"] / analytic_mib),
                "saved / analytic": fmt(row["saved_mib"] / analytic_mib)
                if pd.notna(row["saved_mib"])
                else "",
            }
        )
    return pd.DataFrame(found)


def build_analytic(ctx: ReportContext) -> list[Block] | None:
    table = analytic_table(ctx.rows)
    if table.empty:
        return None
    return [
        Paragraph(
            "Reformer Table 3 memory model evaluated for each measured config "
            f"(suites {', '.join(ANALYTIC_SUITES)}), beside the measured peak. The model "
            "counts activations only, to an order of magnitude; the ratio shows the "
            "constant it leaves out (weights, optimiser state, allocator and runtime)."
        ),
        Table(
            table,
            "* not a row of Table 3: the same rule applied to a combination the "
            "table leaves out. SDPA is charged the l² term.",
            index=False,
        ),
    ]


def build_published(ctx: ReportContext) -> list[Block]:
    blocks: list[Block] = [
        Note(
            "Published numbers come from other hardware, batch sizes and "
            "code; they are listed for scale, never drawn among ours."
        )
    ]
    for table in published_tables():
        blocks += [Heading(table.title, level=3), Table(table.text(), table.caption())]
    return blocks

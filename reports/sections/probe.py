"""The quality section's attention probe: what trained duplication models attend to.

Reads the JSON lines ``python -m suites.tools.attention_probe --out <results>/probe`` wrote
(one per trained model, step and evaluated attention; suites.quality.probe says what each
field measures), keeps the newest line of each, and draws, per probed training run, the
accuracy, the weight on the true copy position, the weight on the query itself and the
logit scale against training step, one line per evaluated attention; a table gives each
model's final step. Rows of another CPU than the report's are left to that report.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph, Table, fmt
from reports.render.plotting import Panel, draw_panels
from suites.rows.names import label
from suites.rows.newest import newest_per_point

log = logging.getLogger("reports")
KIND = "attention_probe"
_POINT = ("mode", "train_attention", "source", "seed", "steps", "step", "eval_attention")
_PANELS = (
    ("accuracy_pct", "accuracy (%)"),
    ("copy_weight", "weight on the copy"),
    ("self_weight", "weight on itself"),
    ("q_scale", "|q| / sqrt(d)"),
)


def probe_rows(results_dir: Path, cpu_models: set[str] | None = None) -> pd.DataFrame:
    """The newest probe row of each (mode, trained, source, seed, step, evaluated), from
    ``results_dir``/probe; a line that is not a probe row is logged and passed over."""
    found = []
    for path in sorted((results_dir / "probe").glob("probe_*.jsonl")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                log.warning("%s:%d: not JSON, skipped (%s)", path, number, exc)
                continue
            if isinstance(row, dict) and row.get("kind") == KIND and "accuracy" in row:
                found.append(row)
    if cpu_models:
        found = [row for row in found if row.get("cpu_model") in cpu_models]
    if not found:
        return pd.DataFrame()
    keep = newest_per_point(
        [tuple(row.get(k) for k in _POINT) for row in found],
        [str(row.get("timestamp_utc", "")) for row in found],
    )
    rows = pd.DataFrame([found[i] for i in keep])
    return rows.assign(
        accuracy_pct=100 * rows["accuracy"],
        evaluated=rows["eval_attention"].map(label),
        trained=rows["train_attention"].map(label),
    )


def probe_blocks(ctx: ReportContext) -> list[Block]:
    """A paragraph, the figure of the training runs and the table of final steps; nothing
    when no probe was written for this report's CPU."""
    cpu_models = set(ctx.rows["cpu_model"].dropna()) if "cpu_model" in ctx.rows else None
    rows = probe_rows(Path(ctx.results_arg), cpu_models)
    if rows.empty:
        return []
    blocks: list[Block] = [
        Paragraph(
            "What the trained duplication models attend to (attention probe): for the "
            "queries of the second half, the weight each evaluated attention puts on the "
            "position holding the token to copy, on the query itself, and the logit scale "
            "|q|/sqrt(d) (the logit of a key parallel to the query). 'Full, self visible' "
            "is exact attention in which a query may attend to itself at its true logit, "
            "the largest any key can have under shared QK; the Reformer masks it."
        )
    ]
    curves = rows[(rows["source"] == "training")]
    if not curves.empty:
        grid = []
        for (_, trained, steps), run in curves.groupby(
            ["mode", "train_attention", "steps"], sort=True
        ):
            title = f"L {int(run['seq_len'].iloc[0])}, trained {label(trained)}, {steps:g} steps"
            grid.append(
                [
                    Panel(
                        data=run,
                        x="step",
                        y=metric,
                        hue="evaluated",
                        title=title,
                        xlabel="training step",
                        ylabel=text,
                        logx=None,
                        logy=False,
                    )
                    for metric, text in _PANELS
                ]
            )
        commands = tuple(
            sorted(
                {
                    f"python -m suites.tools.attention_probe --mode {mode} --train {trained} "
                    f"--eval-size {int(size)} --out {ctx.results_arg}/probe"
                    for mode, trained, size in curves[
                        ["mode", "train_attention", "eval_size"]
                    ].itertuples(index=False)
                }
            )
        )
        blocks.append(
            ctx.save(
                draw_panels(grid, ctx.palette),
                "quality_probe",
                "Duplication task: what the trained models attend to",
                "Colour = the attention the model is evaluated with; one row per training run.",
                commands,
            )
        )
    final = rows[rows["step"] == rows["steps"]]
    table = pd.DataFrame(
        {
            "L": final["seq_len"].map(fmt),
            "trained": final["trained"],
            "evaluated": final["evaluated"],
            "step": final["step"].map(fmt),
            "probed": final["source"].map({"training": "its run", "checkpoint": "suite model"}),
            "accuracy (%)": final["accuracy_pct"].map(lambda v: f"{v:.1f}"),
            "on copy": final["copy_weight"].map(lambda v: f"{v:.3f}"),
            "on itself": final["self_weight"].map(lambda v: f"{v:.3f}"),
            "entropy (nats)": final["entropy"].map(lambda v: f"{v:.2f}"),
            "copy visible": final["copy_seen"].map(lambda v: f"{v:.2f}"),
            "q scale": final["q_scale"].map(lambda v: f"{v:.2f}"),
            "copy margin": final["copy_margin"].map(lambda v: f"{v:.2f}"),
        }
    ).sort_values(["L", "trained", "probed", "evaluated"])
    blocks.append(
        Table(
            table,
            "Attention probe at each model's final step (its own held-out sequences, "
            f"{int(final['eval_size'].max())} per model; one seed).",
            index=False,
        )
    )
    return blocks

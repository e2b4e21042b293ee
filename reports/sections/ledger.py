"""The scale section's memory ledger: the largest tensors alive at a training step's peak.

Reads the newest ledger file that ``python -m suites.tools.ledger --out <results>/ledger`` wrote
(JSON, one step at one length) and turns its top groups of tensors into a table, in units
of one (B, L, d_model) float32 buffer, so a reader sees where each GiB of the peak goes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from reports.render.document import Block, Paragraph, Table, fmt

TOP_ROWS = 15
log = logging.getLogger("reports")


def newest_ledger(results_dir: Path) -> dict[str, Any] | None:
    """The newest ledger_*.json under ``results_dir``/ledger (by the time it was written).
    A file that is not a ledger (torn, hand-edited) is logged and passed over: one bad
    file must not cost the whole report."""
    ledgers = []
    for path in sorted((results_dir / "ledger").glob("ledger_*.json")):
        try:
            ledger = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("%s: not a ledger file, skipped (%s)", path, exc)
            continue
        if not isinstance(ledger, dict) or not isinstance(ledger.get("entries"), list):
            log.warning("%s: not a ledger file, skipped (no list of entries)", path)
            continue
        ledgers.append(ledger)
    ledgers.sort(key=lambda ledger: str(ledger.get("timestamp_utc", "")))
    return ledgers[-1] if ledgers else None


def ledger_frame(ledger: dict[str, Any], top: int = TOP_ROWS) -> pd.DataFrame:
    """Top groups of identical (allocation site, operator, autograd node, shape, dtype)."""
    groups: dict[tuple, dict[str, Any]] = {}
    for entry in ledger["entries"]:
        key = (entry["site"], entry["op"], entry["node"], tuple(entry["shape"]), entry["dtype"])
        group = groups.setdefault(key, {"count": 0, "bytes": 0})
        group["count"] += 1
        group["bytes"] += entry["nbytes"]
    ranked = sorted(groups.items(), key=lambda item: -item[1]["bytes"])[:top]
    unit = ledger["unit_bytes"]
    return pd.DataFrame(
        [
            {
                "buffers": fmt(group["bytes"] / unit),
                "MiB": fmt(group["bytes"] / 2**20),
                "n": group["count"],
                "shape": str(shape),
                "dtype": dtype,
                "op": op,
                "autograd node": node or "-",
                "allocated at": site,
            }
            for (site, op, node, shape, dtype), group in ranked
        ]
    )


def ledger_blocks(results_dir: Path) -> list[Block]:
    """A paragraph and the table, or nothing when no ledger was written."""
    ledger = newest_ledger(results_dir)
    if ledger is None:
        return []
    unit = ledger["unit_bytes"]
    measured = ledger.get("measured_peak_bytes")
    text = (
        f"Memory ledger of one training step at L={ledger['seq_len']} "
        f"({ledger['n_layers']} layers, {ledger['dtype']}"
        + (f", autocast {ledger['autocast']}" if ledger.get("autocast") else "")
        + f"): the tensors alive when the step's tensor memory peaked "
        f"({fmt(ledger['tracked_peak_bytes'] / 2**20)} MiB, "
        f"{fmt(ledger['tracked_peak_bytes'] / unit)} buffers of (B, L, d_model) float32"
        + (
            ""
            if measured is None
            else f"; the process's measured peak was {fmt(measured / 2**20)} MiB"
        )
        + f"). Reproduce: python -m suites.tools.ledger --seq-len {ledger['seq_len']} "
        f"--n-layers {ledger['n_layers']} --out <results>/ledger"
    )
    return [
        Paragraph(text),
        Table(
            ledger_frame(ledger),
            "Largest tensors alive at the peak of one training step.",
            index=False,
        ),
    ]

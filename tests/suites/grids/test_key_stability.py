"""The schema-2 renames moved no point key and no grid id.

A row stores its point's key (``point_key``): ``Point.key(suite, hardware)``, a hash of the
point's params as schema 1 spelled them (suites.rows.names.schema_1_names), the suite and
the hardware (suites.rows.names.hardware_name of the environment, or the Ray node's
``node_hardware``). Every committed row, read through the normal path (so under today's
names), must give its stored key back. And every grid must keep the keys and ``grid_id``
it had before the renames (``fixtures/grid_keys.json``, printed by
``fixtures/grid_keys.py`` from the code before them), so a resumed sweep finds its points
and its file.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from reformer.config import ReformerConfig
from suites.grids.quality import STDLIB
from suites.harness.assembly import assemble_row
from suites.harness.environment import REPO_ROOT
from suites.harness.points import Point
from suites.harness.suite import GridContext
from suites.registry import load_suites
from suites.rows.names import hardware_name
from suites.rows.schema import ROW_CONFIG_FIELDS, SCHEMA_1_CONFIG_FIELDS
from suites.rows.store import read_rows
from tests.suites.grids.fixtures.grid_keys import HARDWARE, grid_keys, is_local

FIXTURE = Path(__file__).parent / "fixtures" / "grid_keys.json"
# The committed record; results/ci and results/ledger hold other kinds of rows.
COMMITTED = sorted((REPO_ROOT / "results").glob("*.jsonl"))
# Columns some suites' points carry beside the config ones (the rest of
# suites.rows.schema.OPTIONAL_FIELDS are measured, not part of the point).
SUITE_POINT_FIELDS = {
    "quality": ("task", "train_attention", "eval_attention", "step", "steps", "run_key", "corpus"),
    "decode": ("cache", "new_tokens"),
    "scale": ("autocast",),
}
# ReformerConfig fields added since schema 1: a point carries them only where it sets them
# away from their default. ``backend`` is left out: on CPU only the chunks slice sweep sets
# it (point_params adds it there), and every row has a ``backend`` column saying which
# implementation ran (suites.harness.backend).
LATER_CONFIG_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(ReformerConfig)
    if f.name not in SCHEMA_1_CONFIG_FIELDS and f.name not in ("max_seq_len", "backend")
)
_STDLIB_SOURCE = re.compile(re.escape(STDLIB) + r"-\d+\.\d+")


def point_params(row: dict[str, Any]) -> dict[str, Any]:
    """The params of the point that made ``row`` (under today's names), as its grid built
    them, with ``num_threads`` as the row records it (see :func:`stored_key_matches`).

    Runners record what ran where the point left a field to them: ``n_buckets`` (no grid
    sets it; the row has the count used) and the quality suite's ``corpus`` (the point
    names the standard library, the row its Python version too). A single attention
    layer (``vocab_size`` null in its row) has no ``vocab_size`` or ``axial_shape``, and
    quality points never carry ``axial_shape``.
    """
    params = {name: row[name] for name in ROW_CONFIG_FIELDS if name in row}
    params |= {name: row[name] for name in LATER_CONFIG_FIELDS if name in row}
    params |= {name: row[name] for name in SUITE_POINT_FIELDS.get(row["suite"], ()) if name in row}
    if row.get("vocab_size") is None:
        params.pop("vocab_size", None)
        params.pop("axial_shape", None)
    if row["suite"] == "quality":
        params.pop("axial_shape", None)
    if "n_buckets" in params:
        params["n_buckets"] = None
    if isinstance(params.get("corpus"), str) and _STDLIB_SOURCE.fullmatch(params["corpus"]):
        params["corpus"] = STDLIB
    if row["suite"] == "chunks" and "slice_elements" in row:
        # The slice sweep names the torch path (suites/grids/chunks.py); it is the one
        # sweep of a CPU grid that names a backend.
        params["backend"] = "torch"
    return params


def stored_key_matches(row: dict[str, Any]) -> bool:
    """Whether the key recomputed from ``row`` is its ``point_key``. A point leaves
    ``num_threads`` unset (torch's default) unless the sweep fixed it (``--threads``,
    ``--quick``), and the row records the count that ran either way: both are tried."""
    params = point_params(row)
    hardware = row.get("node_hardware") or hardware_name(row)
    variants = [params]
    if "backend" in params:
        # Slice-sweep rows from before the sweep named the torch path (it ran there anyway).
        variants.append({k: v for k, v in params.items() if k != "backend"})
    keys = {
        Point(params={**variant, "num_threads": threads}).key(row["suite"], hardware)
        for variant in variants
        for threads in {None, variant.get("num_threads")}
    }
    return row["point_key"] in keys


def test_point_params_inverts_every_grids_row_assembly():
    """What assemble_row writes for a grid's point gives that point's params back (the
    runner's own fields aside): the rule above is the grids' rule, on CPU."""
    for name, suite in load_suites().items():
        for mode in ("quick", "default", "paper"):
            for point in suite.grid(GridContext(device="cpu", mode=mode)):
                row = assemble_row(name, "run", {}, point, "key", {}, None, None)
                assert point_params(row) == point.params, (name, mode, point.params)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_rows_give_their_stored_key_back(path):
    rows, problems = read_rows(path)
    assert not problems and rows
    assert all("pass" not in row and "peak_mb" not in row for row in rows)  # today's names
    wrong = [
        (row["model"], row["phase"], row["seq_len"]) for row in rows if not stored_key_matches(row)
    ]
    assert not wrong, f"{len(wrong)} of {len(rows)} rows of {path.name}: {wrong[:5]}"


def test_every_grid_keeps_its_keys_and_grid_id():
    before = json.loads(FIXTURE.read_text())
    now = grid_keys()
    assert sorted(now) == sorted(before)
    for suite, modes in before.items():
        for mode, identity in modes.items():
            assert now[suite][mode] == identity, (suite, mode)


@pytest.mark.parametrize("suite", ["time", "memory", "hashes", "quality"])
def test_local_attention_points_are_the_ones_left_out(suite):
    """The fixture leaves local attention's points out (grid_keys.py): these grids have
    them, and every one is a local-attention point (the rest kept their keys above)."""
    points = load_suites()[suite].grid(GridContext(device="cpu", mode="default"))
    local = [point for point in points if is_local(point)]
    assert local and len(local) < len(points)
    assert all(
        "local" in (p.params.get("attention"), p.params.get("train_attention"))
        or p.params.get("eval_attention") == "local"
        for p in local
    )


def test_the_fixture_covers_every_suite_and_mode_with_points():
    before = json.loads(FIXTURE.read_text())
    assert set(before) == set(load_suites())
    assert all(set(modes) == {"quick", "default", "paper"} for modes in before.values())
    assert all(identity["points"] > 0 for modes in before.values() for identity in modes.values())
    assert HARDWARE  # keys are hashed with a hardware name, as a sweep's are


def test_a_changed_point_changes_its_key():
    """The check above can fail: one field more, or one spelled otherwise, moves a key."""
    rows, _ = read_rows(COMMITTED[0])
    row = next(row for row in rows if row["status"] == "ok")
    assert stored_key_matches(row)
    assert not stored_key_matches({**row, "seq_len": row["seq_len"] * 2})
    renamed = {**row, "pass": row["phase"]}
    del renamed["phase"]
    assert not stored_key_matches(renamed)

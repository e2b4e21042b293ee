"""docs/results.md documents exactly the fields the row schema (suites.rows.schema) lists,
and every committed row's fields, read under today's names, are in that schema."""

from __future__ import annotations

import re

from suites.harness.environment import REPO_ROOT
from suites.rows.schema import EXTRA_FIELDS, OPTIONAL_FIELDS, ROW_FIELDS
from suites.rows.store import read_rows

DOC = REPO_ROOT / "docs" / "results.md"


def _documented(heading_line: str) -> set[str]:
    """The field names in the table under the line that starts ``heading_line``: backticked
    lower-case names outside parentheses (which hold values, notes and other names)."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_line))
    table = []
    for line in lines[start + 1 :]:
        if table and not line.startswith("|"):
            break
        if line.startswith("|"):
            table.append(line.split("|", 2)[2])  # the columns cell and after
    text = " ".join(table)
    while re.search(r"\([^()]*\)", text):  # innermost parentheses first
        text = re.sub(r"\([^()]*\)", "", text)
    return set(re.findall(r"`([a-z][a-z0-9_]*)`", text))


def test_every_schema_field_is_documented_and_nothing_else() -> None:
    assert _documented("## Columns") == set(ROW_FIELDS + EXTRA_FIELDS)


def test_every_optional_field_is_documented_and_nothing_else() -> None:
    optional = {name for names in OPTIONAL_FIELDS.values() for name in names}
    assert _documented("Columns some rows add") == optional


def test_committed_rows_hold_only_schema_fields() -> None:
    known = set(ROW_FIELDS + EXTRA_FIELDS).union(*OPTIONAL_FIELDS.values())
    for path in sorted((REPO_ROOT / "results").glob("*.jsonl")):
        rows, _ = read_rows(path)  # a line that does not parse is reported and skipped
        for row in rows:
            assert set(row) <= known, (path.name, set(row) - known)

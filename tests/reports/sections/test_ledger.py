"""The scale section's ledger table, from a ledger file the ledger tool wrote."""

from __future__ import annotations

from reports.render.document import Paragraph, Table
from reports.sections.ledger import ledger_blocks
from suites.tools.ledger import ledger_step, scale_point, write


def test_ledger_table_from_the_newest_ledger_file(tmp_path):
    assert ledger_blocks(tmp_path) == []
    ledger = ledger_step(
        scale_point(256, d_model=32, n_heads=2, d_ff=64, ff_chunks=2, bucket_size=16), measure=False
    )
    write(ledger, tmp_path / "ledger")
    paragraph, table = ledger_blocks(tmp_path)
    assert isinstance(paragraph, Paragraph) and "L=256" in paragraph.text
    assert isinstance(table, Table) and 0 < len(table.frame) <= 15
    assert list(table.frame.columns)[:3] == ["buffers", "MiB", "n"]
    biggest = max(e["nbytes"] for e in ledger.entries)
    assert float(table.frame["MiB"].iloc[0]) >= biggest / 2**20 * 0.99


def test_a_garbage_ledger_file_is_skipped_with_a_warning(tmp_path, caplog):
    from reports.sections.ledger import newest_ledger

    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "ledger_torn.json").write_text('{"entries": [')
    (tmp_path / "ledger" / "ledger_list.json").write_text("[1, 2]")
    assert newest_ledger(tmp_path) is None
    assert caplog.text.count("not a ledger file, skipped") == 2

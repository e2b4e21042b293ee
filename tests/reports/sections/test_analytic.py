"""Reformer Table 3 memory model against values worked out by hand."""

import pandas as pd
import pytest

from reports.sections.analytic import analytic_table, dtype_bytes, table3_memory

BASE = dict(batch=1, seq_len=1024, d_model=512, d_ff=4096, n_heads=8, n_layers=6)


def test_transformer_row():
    # max(1*1024*4096, 1*8*1024^2) * 6 = 8_388_608 * 6
    estimate = table3_memory(**BASE, attention="full", reversible=False)
    assert (estimate.row, estimate.in_table3, estimate.elements) == (
        "Transformer",
        True,
        50_331_648,
    )


def test_reversible_drops_the_layer_factor():
    estimate = table3_memory(**BASE, attention="full", reversible=True)
    assert (estimate.row, estimate.elements) == ("Reversible Transformer", 8_388_608)


def test_chunking_replaces_d_ff_by_d_model():
    # one head so the FF term dominates: max(1*1024*4096, 1*1*1024^2) = 4_194_304 unchunked,
    # max(1*1024*512, 1*1*1024^2) = 1_048_576 chunked
    one_head = {**BASE, "n_heads": 1}
    plain = table3_memory(**one_head, attention="full", reversible=True)
    chunked = table3_memory(**one_head, attention="full", reversible=True, ff_chunks=4)
    assert plain.elements == 4_194_304
    assert (chunked.row, chunked.elements) == ("Chunked Reversible Transformer", 1_048_576)


def test_lsh_transformer_and_reformer_rows():
    shape = dict(
        batch=2,
        seq_len=4096,
        d_model=1024,
        d_ff=4096,
        n_heads=8,
        n_layers=6,
        attention="lsh",
        n_hashes=4,
        bucket_size=64,
    )
    # ff: 2*4096*4096 = 33_554_432; attention: 2*8*4096*4*64 = 16_777_216
    lsh = table3_memory(**shape, reversible=False)
    assert (lsh.row, lsh.elements) == ("LSH Transformer", 33_554_432 * 6)
    # chunked ff: 2*4096*1024 = 8_388_608 < attention term
    reformer = table3_memory(**shape, reversible=True, ff_chunks=8)
    assert (reformer.row, reformer.in_table3, reformer.elements) == ("Reformer", True, 16_777_216)
    assert reformer.mebibytes("float32") == pytest.approx(64.0)
    assert reformer.mebibytes("torch.bfloat16") == pytest.approx(32.0)


def test_sdpa_is_charged_like_full_and_extrapolations_are_flagged():
    full = table3_memory(**BASE, attention="full", reversible=False)
    sdpa = table3_memory(**BASE, attention="sdpa", reversible=False)
    assert sdpa.elements == full.elements
    extra = table3_memory(**BASE, attention="lsh", reversible=True, n_hashes=2, bucket_size=32)
    assert (extra.row, extra.in_table3) == ("Reversible LSH Transformer", False)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"attention": "flash"}, "attention"),
        ({"batch": 0}, "batch"),
        ({"n_hashes": 1.5}, "n_hashes"),
    ],
)
def test_bad_config_names_the_field(changes, field):
    kwargs = {**BASE, "attention": "full", "reversible": False, **changes}
    with pytest.raises(ValueError, match=field):
        table3_memory(**kwargs)


def test_dtype_bytes():
    assert [dtype_bytes(d) for d in ("float32", "torch.float16", "bf16", "float64")] == [4, 2, 2, 8]
    with pytest.raises(ValueError, match="dtype='int8'"):
        dtype_bytes("int8")


def test_analytic_table_sets_estimate_beside_measured_peak():
    row = {
        "suite": "memory",
        "model": "m",
        "phase": "train_step",
        "status": "ok",
        **{**BASE, "n_heads": 1},
        "attention": "full",
        "reversible": True,
        "ff_chunks": 4,
        "n_hashes": None,
        "bucket_size": None,
        "dtype": "float32",
        "peak_mib": 8.0,
        "saved_mib": 2.0,
    }
    (line,) = analytic_table(pd.DataFrame([row])).to_dict("records")
    # 1_048_576 floats * 4 bytes = 4 MiB analytic
    assert line["Table 3 row"] == "Chunked Reversible Transformer"
    assert (line["analytic (MiB)"], line["peak / analytic"], line["saved / analytic"]) == (
        "4",
        "2",
        "0.500",
    )


def test_local_attention_is_charged_one_round_of_the_lsh_term():
    shape = dict(
        batch=2, seq_len=4096, d_model=1024, d_ff=4096, n_heads=32, n_layers=6, bucket_size=64
    )
    local = table3_memory(**shape, attention="local", reversible=True, ff_chunks=8, n_hashes=4)
    one_round = table3_memory(**shape, attention="lsh", reversible=True, ff_chunks=8, n_hashes=1)
    # The attention term, 2*32*4096*64, is above the chunked FF's 2*4096*1024.
    assert local.elements == one_round.elements == 2 * 32 * 4096 * 64
    assert (local.row, local.in_table3) == ("Reformer (local)", False)
    plain = table3_memory(**shape, attention="local", reversible=False)
    assert (plain.row, plain.in_table3) == ("Local Transformer", False)

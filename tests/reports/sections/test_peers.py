"""Peers normalised to our LSH per length, and the scale suite's longest fit."""

from __future__ import annotations

import pandas as pd

from reports.load import normalise
from reports.sections.peers import peer_ratios
from reports.sections.scale import longest_fits
from tests.reports.synthetic import peer_scale_rows


def test_peer_ratios_and_longest_fit():
    rows = normalise(pd.DataFrame(peer_scale_rows()))
    ratios = peer_ratios(rows[rows["suite"] == "peers"])
    # Our own rows record impl_version too: only peer- models are peers, attn-lsh is ours.
    assert set(ratios["ours"]) == {"attn-lsh"}
    peer = ratios[ratios["model"] == "peer-reformer-pytorch"]
    assert list(peer["seq_len"]) == [1024, 2048]  # the timed-out peer point has no ratio
    assert set(peer["time_ratio"]) == {1.5} and set(peer["memory_ratio"]) == {2.0}
    sdpa = ratios[ratios["model"] == "attn-sdpa"]
    assert list(sdpa["seq_len"]) == [1024, 2048, 4096] and set(sdpa["memory_ratio"]) == {0.25}
    fits = longest_fits(rows[rows["suite"] == "scale"]).set_index("model")
    assert fits.loc["reformer-lsh-rev", "longest L"] == 65536
    assert fits.loc["transformer-full", "stopped at"] == "16384 (oom)"


def test_peer_ratios_from_the_committed_peers_rows():
    """The committed rows of a real peers run (ours record impl_version 0.1.0) join."""
    from reports.load import load_rows
    from suites.harness.environment import REPO_ROOT

    rows = load_rows(REPO_ROOT / "results")
    peers = rows[rows["source"] == "peers_cpu_20261129T045430Z.jsonl"]
    ratios = peer_ratios(peers)
    assert set(ratios["ours"]) == {"attn-lsh"}
    for model in ("peer-reformer-pytorch", "peer-hf", "attn-sdpa"):
        assert sorted(ratios.loc[ratios["model"] == model, "seq_len"]) == [1024, 4096, 16384]
    at_16k = ratios[(ratios["seq_len"] == 16384)].set_index("model")
    assert at_16k.loc["peer-hf", "memory_ratio"] > 2  # HF keeps every round's chunk scores

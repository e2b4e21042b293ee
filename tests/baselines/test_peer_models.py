"""The peers' whole LMs (the model race): built on our config at matched shapes, with our
LM's loss convention; skipped where a peer is not installed (an optional extra)."""

from __future__ import annotations

import pytest
import torch

from baselines import peer_models, peers
from reformer import ReformerLM
from reformer.config import ReformerConfig
from suites.harness.spec import Workload
from suites.harness.steps import build_step
from suites.rows.names import model_kind

SMALL = ReformerConfig(d_model=32, n_heads=2, n_layers=2, d_ff=64, bucket_size=16, ff_chunks=4)


def test_axial_shape_multiplies_to_the_length_and_bad_ones_are_refused():
    assert peer_models.model_race_config(SMALL, 1024).axial_shape == (32, 32)
    assert peer_models.model_race_config(SMALL, 2048).axial_shape == (64, 32)
    assert peer_models.model_race_config(SMALL, 16384).max_seq_len == 16384
    with pytest.raises(ValueError, match="must multiply to seq_len=512"):
        peer_models._axial_shape(SMALL.replace(axial_shape=(16, 16), max_seq_len=256), 512)
    with pytest.raises(ValueError, match="allowed: \\('peer-lm-hf'"):
        peer_models.build_peer_lm("peer-lm-nope", SMALL, 256)


def test_a_missing_peer_lm_names_the_install_command(monkeypatch):
    monkeypatch.setattr(peer_models, "peer_available", lambda package: False)
    with pytest.raises(peers.PeerMissing, match=r"pip install '\.\[peers\]'"):
        peer_models.build_peer_lm("peer-lm-hf", peer_models.model_race_config(SMALL, 256), 256)


def test_peer_lm_rows_are_whole_models():
    assert {model_kind(model) for model in peer_models.PEER_LMS} == {"peer-lm"}
    assert model_kind("peer-hf") == "peer"


def test_next_token_loss_is_ours():
    # The loss the peers get is the one ReformerLM.loss computes from its own logits.
    # Exact attention: two calls of an LSH model draw different rotations.
    config = peer_models.model_race_config(SMALL, 64).replace(attention="full")
    torch.manual_seed(0)
    ours = ReformerLM(config)
    tokens = torch.randint(config.vocab_size, (2, 64))
    torch.testing.assert_close(peer_models.next_token_loss(ours(tokens), tokens), ours.loss(tokens))


@pytest.mark.parametrize("model", sorted(peer_models.PEER_LMS))
def test_installed_peer_lms_train_on_our_shapes(model):
    package = peer_models.PEER_LMS[model]
    if not peers.peer_available(package):
        pytest.skip(peers.missing_note(package))
    config = peer_models.model_race_config(SMALL, 256)
    torch.manual_seed(0)
    net, info = peer_models.build_peer_lm(model, config, 256)
    assert info["impl_version"] and info["n_buckets"] >= 256 // config.bucket_size
    # Same shapes: at the race's model (d_model 256, 6 layers) parameters within a few
    # percent of ours (heads and axial tables differ a little: baselines/peer_models.py).
    race = peer_models.model_race_config(ReformerConfig(ff_chunks=16), 1024)
    ours = sum(p.numel() for p in ReformerLM(race).parameters())
    theirs = sum(p.numel() for p in peer_models.build_peer_lm(model, race, 1024)[0].parameters())
    assert abs(theirs / ours - 1) < 0.03
    tokens = torch.randint(config.vocab_size, (1, 256))
    assert net(tokens).shape == (1, 256, config.vocab_size)
    loss = net.loss(tokens)
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - torch.log(torch.tensor(256.0))) < 1.0
    # Every weight trains (HF's LM head also holds a bias its forward does not use).
    trained = sum(p.numel() for p in net.parameters() if p.grad is not None)
    assert trained / sum(p.numel() for p in net.parameters()) > 0.99
    step = build_step(model, config, Workload(phase="train_step", seq_len=256))
    step()
    assert step.flops and step.info["flops_method"] == "analytic_same_shapes"

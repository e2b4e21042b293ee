"""The peers suite's model race: whole-model points beside the layer points, which keep the
keys they had before the race was added (so a resumed layer sweep finds its points)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from suites.grids import peers
from suites.harness.suite import GridContext
from suites.rows.names import model_kind
from tests.suites.grids.fixtures.grid_keys import HARDWARE

FIXTURE = Path(__file__).parent / "fixtures" / "peers_layer_keys.json"


@pytest.mark.parametrize("mode", ["quick", "default", "paper"])
def test_layer_points_keep_their_keys_and_the_race_adds_four_models_per_length(mode):
    points = peers.grid(GridContext(device="cpu", mode=mode))
    layers = [p for p in points if p.params["phase"] != "train_step"]
    race = [p for p in points if p.params["phase"] == "train_step"]
    keys = sorted(point.key("peers", HARDWARE) for point in layers)
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()
    assert digest == json.loads(FIXTURE.read_text())[mode]
    lengths = sorted({p.params["seq_len"] for p in layers})
    assert sorted(p.params["model"] for p in race) == sorted(peers.RACE_MODELS * len(lengths))
    for point in race:
        assert model_kind(point.params["model"]) in ("reformer", "transformer", "peer-lm")
        assert point.params["batch"] == 1 and point.params["n_layers"] == point.config.n_layers
        shape = point.config.axial_shape
        assert shape[0] * shape[1] == point.params["seq_len"]
    ours = [p for p in race if p.params["model"] == peers.OURS_LM]
    assert all(p.config.reversible and p.config.ff_chunks == 16 for p in ours)

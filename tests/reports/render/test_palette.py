"""One colour per series label, fixed for known models."""

from __future__ import annotations

from reports.render.palette import FIXED, Palette


def test_palette_is_fixed_for_known_models_and_distinct_for_others():
    one = Palette(["reformer-lsh", "zeta", "alpha"])
    two = Palette(["alpha", "reformer-lsh"])
    assert one.colours["reformer-lsh"] == two.colours["reformer-lsh"] == FIXED["reformer-lsh"]
    assert one.colours["alpha"] == two.colours["alpha"]  # sorted union: alpha comes first
    one.ensure([f"extra-{i}" for i in range(20)])
    unknown = [c for label, c in one.colours.items() if label not in FIXED]
    assert len(set(unknown[:16])) == 16
    assert one.hue_order(["zeta", "transformer-full", "reformer-lsh"]) == [
        "transformer-full",
        "reformer-lsh",
        "zeta",
    ]

"""Seeds of the generators each layer owns, derived from ``config.seed`` and the layer.

Two derivations live here, each kept because changing it would change committed results:
the hash rotations of LSH layers are seeded by :func:`layer_seed` (arithmetic), the dropout
masks by :func:`derived_seed` (sha256 of named parts). New generators should use
:func:`derived_seed`: distinct parts give unrelated seeds, while the arithmetic one maps
some different (seed, layer) pairs to one seed (seed 0, layer 1000003 and seed 7919,
layer 0, say).
"""

from __future__ import annotations

import hashlib


def derived_seed(*parts: object) -> int:
    """A stable 63-bit seed from a tuple of names and numbers (not Python's salted hash)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def layer_seed(seed: int, layer_idx: int) -> int:
    """Seed of a layer's own generator: distinct per layer, fixed by config.seed."""
    return (seed * 1_000_003 + layer_idx * 7919 + 12345) % (2**63)

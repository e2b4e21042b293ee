"""The quality suite's models per mode (suites/quality/sizes.py says why these sizes and
names them per run).

Grid point keys hash the row fields these configs give (tests/suites/grids/test_key_stability.py
holds them): changing a field moves every key of the runs that use it.
"""

from __future__ import annotations

from reformer.config import ReformerConfig

QUALITY_PRESETS: dict[str, ReformerConfig] = {
    # The duplication task (paper sec. 5: 1 layer, vocabulary 128), LSH-1 unless told:
    "duplication-quick": ReformerConfig(
        vocab_size=128,
        d_model=32,
        n_heads=2,
        n_layers=1,
        d_ff=32,
        n_hashes=1,
        bucket_size=4,
        reversible=False,
        max_seq_len=16,
    ),
    "duplication": ReformerConfig(
        vocab_size=128,
        n_layers=1,
        d_ff=256,
        n_hashes=1,
        bucket_size=32,
        reversible=False,
        max_seq_len=512,
    ),
    "duplication-paper": ReformerConfig(
        vocab_size=128, n_layers=1, d_ff=512, n_hashes=1, reversible=False, max_seq_len=1024
    ),
    # The byte-level LM, as the Transformer baseline runs it (its d_ff; a Reformer of equal
    # parameter count gets a wider one):
    "bytes-quick": ReformerConfig(
        attention="sdpa",
        d_model=32,
        n_heads=2,
        n_layers=2,
        d_ff=32,
        bucket_size=8,
        max_seq_len=32,
    ),
    "bytes": ReformerConfig(
        attention="sdpa", d_model=128, n_layers=2, d_ff=512, bucket_size=32, max_seq_len=256
    ),
    "bytes-paper": ReformerConfig(attention="sdpa", n_layers=6, max_seq_len=2048),
}

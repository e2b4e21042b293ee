"""The types of a result row's fields (docs/results.md), checked wherever rows are read.

A row whose field has the wrong type (``"seq_len": "1024"``, a hand edit or another
tool's output) would break every later comparison of that field: sorting lengths in a
summary, grouping points in a report. suites.rows.store.read_rows, the one reader of result
files, reports such a row with its file and line and skips it. Null is always allowed (a
column that does not apply); fields not listed here are not checked. Fields are named as
today (a row of an older schema is checked after suites.rows.names renamed its fields).
Numbers must be finite, and every counted or measured one (all but ``seed``) at least 0:
Python's JSON reader accepts NaN and Infinity, and a row with ``"t_median_ms": NaN`` or
``"seq_len": -5`` would otherwise count as measured and reach tables and figures.
"""

from __future__ import annotations

import math
from typing import Any

INT_FIELDS = (
    "schema_version",
    "batch",
    "seq_len",
    "num_threads",
    "jobs",
    "vocab_size",
    "d_model",
    "n_heads",
    "n_layers",
    "d_ff",
    "n_hashes",
    "bucket_size",
    "ff_chunks",
    "slice_elements",
    "seed",
    "n_cpus",
    "n_samples",
    "grid_points",
    "step",
    "steps",
    "new_tokens",
    "malloc_mmap_threshold",
)
NUMBER_FIELDS = (
    "t_median_ms",
    "t_iqr_ms",
    "peak_mib",
    "reserved_mib",
    "nvml_peak_mib",
    "saved_mib",
    "tokens_per_s",
    "flops",
    "tflops_per_s",
    "wall_s",
    "load_avg_1m",
    "max_memory_gb",
    "timeout_s",
    "peak_tflops",
    "mfu",
    "accuracy",
    "bits_per_byte",
    "loss",
    "t_p90_ms",
    "prefill_ms",
    "cache_bytes_per_token",
    "tokens_per_s_per_seq",
)
TEXT_FIELDS = (
    "run_id",
    "timestamp_utc",
    "suite",
    "model",
    "attention",
    "phase",
    "mode",
    "dtype",
    "device",
    "status",
    "point_key",
    "host",
    "cpu_model",
)
BOOL_FIELDS = ("causal", "reversible", "dup_correction", "threads_oversubscribed")


# The one numeric field that may be negative (a user's seed).
SIGNED_FIELDS = ("seed",)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _is_amount(value: Any) -> bool:
    return _is_number(value) and value >= 0


def _is_buckets(value: Any) -> bool:
    """n_buckets: an int, or a list of ints (a factorised hash)."""
    return _is_int(value) or (isinstance(value, list) and all(_is_int(v) for v in value))


_CHECKS: dict[str, tuple[Any, str]] = {
    **{name: (_is_count, "an int >= 0") for name in INT_FIELDS if name not in SIGNED_FIELDS},
    **{name: (_is_int, "an int") for name in SIGNED_FIELDS},
    **{name: (_is_amount, "a finite number >= 0") for name in NUMBER_FIELDS},
    **{name: (lambda v: isinstance(v, str), "a string") for name in TEXT_FIELDS},
    **{name: (lambda v: isinstance(v, bool), "true or false") for name in BOOL_FIELDS},
    "n_buckets": (_is_buckets, "an int or a list of ints"),
    "argv": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "a list of strings",
    ),
    "axial_shape": (
        lambda v: isinstance(v, list) and len(v) == 2 and all(_is_int(x) for x in v),
        "a list of two ints",
    ),
}


def type_problem(row: dict[str, Any]) -> str | None:
    """Why ``row`` does not match the schema's types (the first field that does not), or
    None when it does."""
    for name, (check, wanted) in _CHECKS.items():
        value = row.get(name)
        if value is not None and not check(value):
            return f"{name}={value!r} must be {wanted} or null"
    return None

"""The result row's fields, said once and without torch: which run, the point's config,
the environment, what was measured, and the harness's extra columns (docs/results.md
documents each; tests/suites/rows/test_results_doc.py checks the two agree).

The config columns are the harness's fields and the ``ReformerConfig`` fields of schema 1,
written out here so that reading rows needs no model; suites.harness.spec derives the same
list from ``ReformerConfig`` and a test checks they agree.
"""

from __future__ import annotations

# What a point measures (its ``phase``): a forward without gradients, forward and
# backward, a whole training step (with the optimiser's update), or generation.
PHASES = ("fwd", "fwd_bwd", "train_step", "decode")
DTYPES = ("float32", "bfloat16", "float16")
# How big a grid is (its rows' ``mode``): a smoke run, the default, or paper scale.
MODES = ("quick", "default", "paper")
# Every suite (a row's ``suite``), in the order reports and listings give them. Written out,
# not found by importing the grids, so a reader of rows knows the suites without torch;
# suites.registry refuses a grid missing here, and a test checks the two agree.
SUITE_ORDER = (
    "memory",
    "time",
    "hashes",
    "chunks",
    "reversible",
    "peers",
    "scale",
    "decode",
    "quality",
)
HARNESS_FIELDS = ("model", "phase", "batch", "seq_len", "dtype", "device", "num_threads")
# The config fields every row of schema version 1 carries (null where they do not apply).
# A field added to ReformerConfig since is written, and joins the point's key, only where a
# point sets it away from its default: rows measured before it existed keep their keys, so
# a resumed sweep does not measure them again.
SCHEMA_1_CONFIG_COLUMNS = (
    "vocab_size",
    "d_model",
    "n_heads",
    "n_layers",
    "d_ff",
    "attention",
    "n_hashes",
    "bucket_size",
    "n_buckets",
    "causal",
    "reversible",
    "ff_chunks",
    "axial_shape",
    "seed",
)
SCHEMA_1_CONFIG_FIELDS = frozenset(SCHEMA_1_CONFIG_COLUMNS)
# The config columns of every row: the model's name, its config, then how it was run.
ROW_CONFIG_FIELDS = ("model", *SCHEMA_1_CONFIG_COLUMNS, *HARNESS_FIELDS[1:])
# 2: memory columns end in _mib (schema 1: _mb), what a point measures is its ``phase``
# (schema 1: ``pass``) and the paper-scale grid's mode is "paper" (schema 1: "full");
# suites.rows.names reads rows of schema 1 under today's names.
SCHEMA_VERSION = 2
STATUSES = ("ok", "oom", "timeout", "error", "skipped")

# The row's fields, in groups: which run, the environment, then what was measured.
IDENTITY_FIELDS = ("schema_version", "run_id", "timestamp_utc", "git_sha", "git_dirty")
ENVIRONMENT_FIELDS = (
    "host",
    "cpu_model",
    "n_cpus",
    "gpu_name",
    "driver",
    "torch",
    "python",
    "cuda",
)
MEASURED_FIELDS = (
    # timing
    "t_median_ms",
    "t_iqr_ms",
    "n_samples",
    # memory (MiB = 2**20 bytes)
    "peak_mib",
    "reserved_mib",
    "nvml_peak_mib",
    "saved_mib",
    "memory_method",
    # derived
    "tokens_per_s",
    "flops",
    "tflops_per_s",
    # status
    "status",
    "error",
    "wall_s",
)
ROW_FIELDS: tuple[str, ...] = (
    *IDENTITY_FIELDS,
    "suite",
    # config: the harness fields and ReformerConfig's (suites.harness.spec)
    *ROW_CONFIG_FIELDS,
    *ENVIRONMENT_FIELDS,
    *MEASURED_FIELDS,
)
# Harness columns beyond the measurement itself: which implementation ran (peers), the
# stable key resume matches on, the memory cap the child ran under, how FLOPs were had,
# and the machine's 1-minute load average when the point ended, OMP_WAIT_POLICY and glibc's
# mmap threshold in the point's process (suites.harness.process_settings) (times
# taken on a busy shared machine are not comparable with those taken on an idle one);
# which backend ran our LSH attention (suites.harness.backend), the peak FLOP/s and MFU
# (suites.harness.efficiency); the grid's mode and its number of points (a run with a row per point
# is complete).
EXTRA_FIELDS: tuple[str, ...] = (
    "point_key",
    "impl",
    "impl_version",
    "max_memory_gb",
    "memory_cap",
    "flops_method",
    "timeout_s",
    "load_avg_1m",
    "omp_wait_policy",
    "malloc_mmap_threshold",
    "backend",
    "peak_tflops",
    "peak_source",
    "mfu",
    "mode",
    "grid_points",
    "grid_id",
    "threads_oversubscribed",
    "argv",
    "jobs",
)
# Columns only some rows carry, by what writes them (docs/results.md documents each).
OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "quality": (
        "task",
        "train_attention",
        "eval_attention",
        "step",
        "steps",
        "run_key",
        "checkpoint",
        "trained_now",
        "shared_qk",
        "n_params",
        "tokens_seen",
        "lr",
        "warmup_steps",
        "eval_size",
        "train_wall_s",
        "accuracy",
        "bits_per_byte",
        "loss",
        "corpus",
        "corpus_fingerprint",
        "corpus_root",
        "corpus_split",
        "corpus_train_bytes",
        "corpus_train_files",
        "corpus_validation_bytes",
        "corpus_validation_files",
    ),
    "decode": (
        "cache",
        "new_tokens",
        "t_p90_ms",
        "prefill_ms",
        "cache_bytes_per_token",
        "tokens_per_s_per_seq",
    ),
    "scale": ("autocast", "loss"),
    # A ReformerConfig field added since schema 1, where a point sets it away from its
    # default (suites.harness.spec.model_fields): the chunks suite's slice-budget sweep.
    "config beyond schema 1": ("slice_elements",),
    "ray": ("node_hardware", "ray_node_id"),
    "memory cap": ("max_memory_gb_requested",),
}

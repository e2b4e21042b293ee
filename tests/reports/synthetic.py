"""Synthetic result rows for the report tests (a fixture module, not a test module).

The numbers follow simple laws (memory ~ L or L², time ~ L at fixed tokens per batch for
full attention, flat for LSH) so figures look like real ones and crossovers are known.
Every status appears: ok, oom, timeout, error and skipped. Rows are made by the harness's
own row assembly (suites.harness.assembly), so they carry every schema field as real rows do
and a change to the schema reaches these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from suites.harness.assembly import assemble_row
from suites.harness.points import Point
from suites.rows.schema import ENVIRONMENT_FIELDS, ROW_CONFIG_FIELDS

ENV = {
    "schema_version": 1,
    "git_sha": "0123456789abcdef",
    "git_dirty": False,
    "host": "testhost",
    "cpu_model": "Test(R) CPU Model 9 @ 2.00GHz",
    "n_cpus": 2,
    "gpu_name": None,
    "driver": None,
    "torch": "2.13.0",
    "python": "3.11.2",
    "cuda": None,
    "device": "cpu",
    "dtype": "float32",
    "num_threads": 2,
    "seed": 0,
    "memory_method": "vmhwm",
    "causal": True,
    "load_avg_1m": 0.5,
}
SHAPE = {
    "d_model": 64,
    "n_heads": 4,
    "n_layers": 2,
    "d_ff": 256,
    "bucket_size": 32,
    "n_hashes": 2,
    "ff_chunks": 1,
}
MODELS = {
    "transformer-full": {"attention": "full", "reversible": False},
    "transformer-sdpa": {"attention": "sdpa", "reversible": False},
    "reformer-lsh-rev": {"attention": "lsh", "reversible": True},
    "reformer-lsh": {"attention": "lsh", "reversible": False},
}
LENGTHS = (512, 1024, 2048, 4096, 8192)
TOKENS_PER_BATCH = 8192


def _row(suite: str, model: str, day: int, **fields: object) -> dict:
    """A row as the sweep assembles it: the point's config fields, the run's environment,
    then what the point's runner returned (here: ``fields`` beyond config and environment)."""
    values = {**ENV, **SHAPE, **MODELS.get(model, {}), "model": model, "batch": 1}
    values |= {"phase": "train_step", **fields}
    env = {name: values.pop(name) for name in ENVIRONMENT_FIELDS if name in values}
    env |= {"git_sha": values.pop("git_sha"), "git_dirty": values.pop("git_dirty")}
    params = {name: values.pop(name) for name in ROW_CONFIG_FIELDS if name in values}
    result = {"status": "ok", "error": None, "wall_s": 1.0} | values
    row = assemble_row(
        suite,
        f"{suite}_synthetic",
        env,
        Point(params=params),
        key=None,  # no point key: these points are told apart by their fields
        result=result,
        max_memory_gb=None,
        timeout_s=None,
    )
    # A fixed stamp, not the clock's: a rebuilt report must not change with the time (the
    # load average is ENV's or the caller's, which the runner's fields above set).
    return row | {"timestamp_utc": fields.get("timestamp_utc", f"2024-05-0{1 + day % 3}T12:00:00Z")}


def _measure(row: dict, t_ms: float, peak_mib: float | None) -> dict:
    if row["status"] == "ok":
        row.update(
            t_median_ms=t_ms,
            t_iqr_ms=0.05 * t_ms,
            n_samples=7,
            peak_mib=peak_mib,
            saved_mib=None if peak_mib is None or row["phase"] == "fwd" else 0.6 * peak_mib,
            tokens_per_s=row["batch"] * row["seq_len"] / t_ms * 1e3,
        )
        # 1 MFLOP per token against a 0.1 TFLOP/s peak (the efficiency section).
        row.update(
            tflops_per_s=row["tokens_per_s"] * 1e-6,
            peak_tflops=0.1,
            peak_source="measured_gemm_4096",
        )
        row["mfu"] = row["tflops_per_s"] / row["peak_tflops"]
    return row


def memory_rows() -> list[dict]:
    """The main job: four models at depths 2 and 6; a failed point's row lacks num_threads
    (its child never reported it), as real rows do."""
    rows = []
    for n_layers in (2, 6):
        for model in MODELS:
            for phase in ("fwd", "train_step"):
                for seq_len in LENGTHS:
                    status = _memory_status(model, phase, seq_len, n_layers)
                    quadratic = MODELS[model]["attention"] == "full"
                    per_layer = 1 if MODELS[model]["reversible"] else n_layers / 2
                    peak = (
                        20
                        + 0.01 * seq_len * per_layer
                        + (2e-5 * seq_len**2 * n_layers / 2 if quadratic else 0)
                    )
                    row = _row(
                        "memory",
                        model,
                        seq_len,
                        seq_len=seq_len,
                        status=status,
                        n_layers=n_layers,
                        **{"phase": phase},
                    )
                    if status == "error":
                        row["error"] = "RuntimeError: synthetic failure"
                    if status != "ok":
                        row["num_threads"] = None
                    rows.append(_measure(row, 1.0, peak * (3 if phase == "train_step" else 1)))
    return rows


def _memory_status(model: str, phase: str, seq_len: int, n_layers: int) -> str:
    first_oom = 4096 if n_layers == 2 else 2048
    if model == "transformer-full" and phase == "train_step" and seq_len >= first_oom:
        return "oom" if seq_len == first_oom else "skipped"
    if model == "reformer-lsh" and seq_len == 8192 and phase == "fwd" and n_layers == 2:
        return "error"
    return "ok"


def quick_memory_rows() -> list[dict]:
    """An older --quick run of the memory suite (1 layer, d_model 32), from the same folder."""
    rows = []
    for model in MODELS:
        for seq_len in (128, 256):
            row = _row(
                "memory",
                model,
                0,
                seq_len=seq_len,
                n_layers=1,
                d_model=32,
                d_ff=64,
                num_threads=1,
                run_id="memory_quick",
                timestamp_utc="2024-04-29T12:00:00Z",
                **{"phase": "train_step"},
            )
            rows.append(_measure(row, 1.0, 5.0 + seq_len / 100))
    return rows


def time_rows() -> list[dict]:
    """Full attention 2 + 0.01 L ms, SDPA 1 + 0.006 L, LSH-n 12 n ms flat in L; the LSH-8
    points ran on a busy machine (load above the 2 CPUs)."""
    rows = []
    for seq_len in LENGTHS:
        batch = TOKENS_PER_BATCH // seq_len
        for model, cost in (
            ("transformer-full", 2 + 0.01 * seq_len),
            ("transformer-sdpa", 1 + 0.006 * seq_len),
        ):
            rows.append(
                _measure(
                    _row(
                        "time",
                        model,
                        0,
                        seq_len=seq_len,
                        batch=batch,
                        load_avg_1m=1.5,
                        **{"phase": "fwd_bwd"},
                    ),
                    cost,
                    None,
                )
            )
        for n_hashes in (1, 2, 4, 8):
            status = "timeout" if n_hashes == 8 and seq_len == 8192 else "ok"
            rows.append(
                _measure(
                    _row(
                        "time",
                        "reformer-lsh-rev",
                        0,
                        seq_len=seq_len,
                        batch=batch,
                        n_hashes=n_hashes,
                        status=status,
                        load_avg_1m=5.0 if n_hashes == 8 else 1.5,
                        **{"phase": "fwd_bwd"},
                    ),
                    12.0 * n_hashes,
                    None,
                )
            )
    return rows


def old_time_rows() -> list[dict]:
    """An older run of the time suite at one thread, on a loaded machine: times twice as
    long. Drawn only when asked (--runs all), never on the lines of the newest run."""
    return [
        dict(
            _measure({**row, "status": "ok"}, 2 * (row["t_median_ms"] or 96.0), None),
            run_id="time_old",
            num_threads=1,
            load_avg_1m=6.0,
            timestamp_utc="2024-04-30T12:00:00Z",
        )
        for row in time_rows()
    ]


def ablation_rows() -> list[dict]:
    rows = []
    for n_hashes in (1, 2, 4, 8):
        rows.append(
            _measure(
                _row("hashes", "reformer-lsh-rev", 0, seq_len=2048, n_hashes=n_hashes),
                10.0 * n_hashes,
                40 + 10 * n_hashes,
            )
        )
    for bucket_size in (32, 64, 128, 256):
        status = "skipped" if bucket_size == 256 else "ok"
        rows.append(
            _measure(
                _row(
                    "chunks",
                    "reformer-lsh-rev",
                    0,
                    seq_len=2048,
                    bucket_size=bucket_size,
                    status=status,
                ),
                8 + bucket_size / 16,
                50 + bucket_size / 4,
            )
        )
    for model in ("reformer-lsh-rev", "reformer-lsh"):
        for ff_chunks in (1, 4):
            for n_layers in (2, 4, 8):
                reversible = MODELS[model]["reversible"]
                peak = 30 + (5 if reversible else 5 * n_layers) * (1 if ff_chunks > 1 else 2)
                rows.append(
                    _measure(
                        _row(
                            "reversible",
                            model,
                            0,
                            seq_len=1024,
                            n_layers=n_layers,
                            ff_chunks=ff_chunks,
                        ),
                        5.0 * n_layers,
                        peak,
                    )
                )
    return rows


def peer_scale_rows() -> list[dict]:
    """Peers as the harness writes them: every row records an impl_version, ours too."""
    rows = []
    layer = {"n_layers": 1, "reversible": None, "d_ff": None, "ff_chunks": None}
    for seq_len in (1024, 2048, 4096):
        ours = _row(
            "peers",
            "attn-lsh",
            0,
            seq_len=seq_len,
            attention="lsh",
            **layer,
            impl="reformer.LSHSelfAttention",
            impl_version="0.1.0",
            **{"phase": "fwd_bwd"},
        )
        rows.append(_measure(ours, 10.0, 40.0))
        sdpa = _row(
            "peers",
            "attn-sdpa",
            0,
            seq_len=seq_len,
            attention="sdpa",
            **layer,
            n_hashes=None,
            bucket_size=None,
            impl="reformer.ExactSelfAttention",
            impl_version="0.1.0",
            **{"phase": "fwd_bwd"},
        )
        rows.append(_measure(sdpa, 4.0 * seq_len / 1024, 10.0))
        status = "timeout" if seq_len == 4096 else "ok"
        peer = _row(
            "peers",
            "peer-reformer-pytorch",
            0,
            seq_len=seq_len,
            attention="lsh",
            **layer,
            impl="reformer_pytorch.LSHSelfAttention",
            impl_version="1.4.4",
            status=status,
            **{"phase": "fwd_bwd"},
        )
        rows.append(_measure(peer, 15.0, 80.0))
    for model, limit in (("reformer-lsh-rev", 65536), ("transformer-full", 8192)):
        for seq_len in (4096, 8192, 16384, 32768, 65536, 131072):
            status = "ok" if seq_len <= limit else "oom"
            row = _row("scale", model, 0, seq_len=seq_len, status=status, budget_mib=16384)
            rows.append(_measure(row, 0.05 * seq_len, 0.2 * seq_len))
    return rows


def decode_rows() -> list[dict]:
    """LSH flat in context, the KV cache linear, crossing at 8K; HF at 1K and 4K."""
    rows = []
    for seq_len in (1024, 4096, 16384, 65536):
        for model, cache, ms in (
            ("reformer-lsh-rev", "lsh", 8.0),
            ("transformer-sdpa", "kv", 8.0 * seq_len / 8192),
            ("peer-hf", "hf", 80.0),
        ):
            if cache == "hf" and seq_len > 4096:
                continue
            row = _row("decode", model, 0, seq_len=seq_len, cache=cache, **{"phase": "decode"})
            row = _measure(row, ms, 0.001 * seq_len)
            row.update(t_p90_ms=1.2 * ms, prefill_ms=seq_len / 100, new_tokens=64)
            row["cache_bytes_per_token"] = {"lsh": 1152.0, "kv": 2048.0}.get(cache)
            rows.append(row)
    return rows + batched_decode_rows()


def batched_decode_rows() -> list[dict]:
    """Batch 8 of both caches at 1K and 4K: each step 3x batch 1's (LSH), 2x (KV)."""
    rows = []
    for seq_len in (1024, 4096):
        for model, cache, ms in (
            ("reformer-lsh-rev", "lsh", 24.0),
            ("transformer-sdpa", "kv", 16.0 * seq_len / 8192),
        ):
            row = _row("decode", model, 0, seq_len=seq_len, cache=cache, **{"phase": "decode"})
            row = _measure(row | {"batch": 8}, ms, 0.008 * seq_len)
            row.update(t_p90_ms=1.2 * ms, prefill_ms=seq_len / 12, new_tokens=64)
            row.update(tokens_per_s=8e3 / ms, tokens_per_s_per_seq=1e3 / ms)
            row["cache_bytes_per_token"] = {"lsh": 8 * 1152.0, "kv": 8 * 2048.0}[cache]
            rows.append(row)
    return rows


def quality_rows() -> list[dict]:
    """Table 2 as three seeds (the paper's numbers, then two others a few points off), and
    byte-LM curves of one seed."""
    rows = []
    paper = {
        "shared-full": (1.0, 0.948, 0.925, 0.769, 0.525),
        "lsh-4": (0.008, 1.0, 0.999, 0.994, 0.919),
        "lsh-2": (0.008, 1.0, 0.999, 0.981, 0.868),
        "lsh-1": (0.008, 0.999, 0.996, 0.948, 0.779),
    }
    for seed, offset in ((0, 0.0), (1, -0.04), (2, -0.02)):
        for trained, accuracies in paper.items():
            for evaluated, accuracy in zip(
                ("shared-full", "lsh-8", "lsh-4", "lsh-2", "lsh-1"), accuracies, strict=True
            ):
                rows.append(
                    _measure(
                        _row(
                            "quality",
                            "reformer-dup",
                            0,
                            seq_len=64,
                            task="duplication",
                            seed=seed,
                            train_attention=trained,
                            eval_attention=evaluated,
                            accuracy=max(0.0, accuracy + offset),
                        ),
                        1.0,
                        None,
                    )
                )
    for model, final in (("reformer-lsh-rev", 2.1), ("transformer-sdpa", 2.0)):
        for step in (100, 200, 300):
            rows.append(
                _measure(
                    _row(
                        "quality",
                        model,
                        0,
                        seq_len=256,
                        task="byte_lm",
                        step=step,
                        bits_per_byte=final + 300 / step - 1,
                    ),
                    1.0,
                    None,
                )
            )
    return rows


def history_rows() -> list[dict]:
    """Rows as suites.ci writes them: two ratio gates, one deterministic gate failing last."""
    common = {"host": "ci", "command": "python -m suites.ci"}
    ratios = [
        {
            **common,
            "timestamp_utc": f"2024-05-0{day}T00:00:00Z",
            "git_sha": f"sha{day}",
            "figure": figure,
            "kind": "ratio",
            "value": value * (1 + 0.02 * day),
            "unit": "time ratio",
            "status": "pass",
            "baseline": value,
            "tolerance": 0.25,
        }
        for day in (1, 2, 3)
        for figure, value in (("lsh4_vs_full_8k", 0.4), ("reversible_vs_plain_step", 1.5))
    ]
    slope = [
        {
            **common,
            "timestamp_utc": f"2024-05-0{day}T00:00:00Z",
            "git_sha": f"sha{day}",
            "figure": "saved_bytes_slope_lsh",
            "kind": "deterministic",
            "value": value,
            "unit": "log-log slope",
            "status": status,
            "limit": "<= 1.15",
        }
        for day, value, status in ((1, 1.0, "pass"), (2, 1.01, "pass"), (3, 2.0, "fail"))
    ]
    return ratios + slope


def all_rows() -> list[dict]:
    """Every suite's newest run, plus an older run of two suites that a default report
    leaves out (a --quick memory run and a one-thread time run under load)."""
    return (
        memory_rows()
        + quick_memory_rows()
        + time_rows()
        + old_time_rows()
        + ablation_rows()
        + peer_scale_rows()
        + decode_rows()
        + quality_rows()
    )


def write_results(
    folder: Path, rows: list[dict], history: list[dict] | None = None, malformed: bool = False
) -> Path:
    """results/<suite>.jsonl per suite, plus ci/history.jsonl; optionally a torn line."""
    folder.mkdir(parents=True, exist_ok=True)
    by_suite: dict[str, list[dict]] = {}
    for row in rows:
        by_suite.setdefault(row["suite"], []).append(row)
    for suite, part in by_suite.items():
        lines = [json.dumps(row) for row in part]
        if malformed:
            lines.insert(1, '{"suite": "memory", "model": ')
        (folder / f"{suite}_cpu_synthetic.jsonl").write_text("\n".join(lines) + "\n")
    if history:
        (folder / "ci").mkdir(exist_ok=True)
        (folder / "ci" / "history.jsonl").write_text(
            "\n".join(json.dumps(row) for row in history) + "\n"
        )
    return folder

"""Point builders shared by the grids: every point carries every config field of the row."""

from __future__ import annotations

from typing import Any

from suites.registry import GridContext, Point

# (min_run_time s, timeout s) per mode: quick is a smoke run, full is paper scale.
SIZING = {"quick": (0.01, 120.0), "default": (0.5, 600.0), "full": (2.0, 3600.0)}


def powers_of_two(low: int, high: int) -> list[int]:
    """low, 2·low, ... up to high inclusive (both powers of two)."""
    lengths = []
    length = low
    while length <= high:
        lengths.append(length)
        length *= 2
    return lengths


def _point(ctx: GridContext, params: dict[str, Any], min_run_time: float | None,
           timeout_s: float | None, options: dict[str, Any] | None) -> Point:
    default_run_time, default_timeout = SIZING[ctx.mode]
    return Point(params=params, options=dict(options or {}),
                 min_run_time=default_run_time if min_run_time is None else min_run_time,
                 timeout_s=default_timeout if timeout_s is None else timeout_s)


def layer_point(ctx: GridContext, *, model: str, seq_len: int, batch: int = 1,
                d_model: int = 256, n_heads: int = 4, n_hashes: int = 4,
                bucket_size: int = 64, n_buckets: int | None = None, causal: bool = True,
                pass_name: str = "fwd_bwd", min_run_time: float | None = None,
                timeout_s: float | None = None,
                options: dict[str, Any] | None = None) -> Point:
    """One attention layer, x (B, L, d_model): ours, exact attention, or a peer."""
    exact = model in ("attn-full", "attn-sdpa")
    attention = model.removeprefix("attn-") if exact else "lsh"
    params = {
        "model": model, "attention": attention, "reversible": None, "causal": causal,
        "pass": pass_name, "batch": batch, "seq_len": seq_len, "d_model": d_model,
        "n_heads": n_heads, "n_layers": 1, "d_ff": None,
        "n_hashes": None if exact else n_hashes,
        "bucket_size": None if exact else bucket_size,
        "n_buckets": None if exact else n_buckets, "ff_chunks": None,
        "dtype": "float32", "device": ctx.device, "num_threads": None, "seed": 0,
    }
    return _point(ctx, params, min_run_time, timeout_s, options)


def lm_point(ctx: GridContext, *, family: str, attention: str, reversible: bool,
             seq_len: int, pass_name: str, batch: int = 1, d_model: int = 256,
             n_heads: int = 4, n_layers: int = 6, d_ff: int = 1024, n_hashes: int = 4,
             bucket_size: int = 64, ff_chunks: int = 1, vocab_size: int = 256,
             axial_shape: tuple[int, int] | None = None, min_run_time: float | None = None,
             timeout_s: float | None = None,
             options: dict[str, Any] | None = None) -> Point:
    """A whole language model (``family`` "transformer" or "reformer") on tokens (B, L)."""
    from suites.steps import lm_name

    lsh = attention == "lsh"
    reformer = family == "reformer"
    params = {
        "model": lm_name(family, attention, reversible), "attention": attention,
        "reversible": reversible and reformer, "causal": True, "pass": pass_name,
        "batch": batch, "seq_len": seq_len, "d_model": d_model, "n_heads": n_heads,
        "n_layers": n_layers, "d_ff": d_ff, "n_hashes": n_hashes if lsh else None,
        "bucket_size": bucket_size if lsh else None, "n_buckets": None,
        "ff_chunks": ff_chunks if reformer else 1, "dtype": "float32", "device": ctx.device,
        "num_threads": None, "seed": 0, "vocab_size": vocab_size,
        "axial_shape": list(axial_shape) if axial_shape else None,
    }
    return _point(ctx, params, min_run_time, timeout_s, options)


def ok_rows(rows: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok"
            and all(r.get(k) == v for k, v in match.items())]

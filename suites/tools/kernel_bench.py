"""Kernel microbenchmark: one LSH attention call, forward + backward, through the Triton
kernels, the torch path and SDPA's flash kernel (exact causal attention), at a few lengths.

    python -m suites.tools.kernel_bench [--device cuda] [--lengths 4096,8192,16384] [--out FILE]

Shapes follow the suites' attention layer (d_model 256 = 4 heads of 64, batch 1): LSH-4,
bucket_size (chunk) 64, causal, bfloat16 by default. Inputs are (B, H, L, d_head); each
call sets gradients to None, runs the attention and backpropagates a fixed random output
gradient. Times are medians of ``Timer.blocked_autorange`` (it synchronises CUDA). The
ratios printed are what the Triton kernels are for: torch path / Triton (target: at least
10 at 16K) and SDPA flash / Triton (above 1 where LSH is faster; target: from 16K or
sooner). A variant that cannot run here (no CUDA for Triton, no flash kernel on a CPU, out
of memory) is reported with its reason; the others still run. Each measurement is printed
as it is taken, and ``--out`` (the numbers with the environment, as JSON) is rewritten after
every one, so a run stopped by a time limit keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reformer import lsh_attention
from reformer.config import PRESETS
from suites.harness.dtypes import TORCH_DTYPES
from suites.harness.environment import environment
from suites.harness.lengths import lengths_argument

VARIANTS = ("triton", "torch", "sdpa_flash")


def make_call(
    variant: str,
    seq_len: int,
    *,
    batch: int,
    heads: int,
    d_head: int,
    n_hashes: int,
    bucket_size: int,
    dtype: torch.dtype,
    device: str,
) -> Callable[[], None]:
    """One forward + backward of ``variant`` on fresh random inputs (built untimed)."""
    generator = torch.Generator().manual_seed(0)

    def tensor() -> torch.Tensor:
        shape = (batch, heads, seq_len, d_head)
        return (
            torch.randn(shape, generator=generator).to(device=device, dtype=dtype).requires_grad_()
        )

    grad_out = tensor().detach()
    if variant == "sdpa_flash":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q, k, v = tensor(), tensor(), tensor()

        def attend() -> torch.Tensor:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)

        inputs: tuple[torch.Tensor, ...] = (q, k, v)
    else:
        qk, v = tensor(), tensor()

        def attend() -> torch.Tensor:
            out = lsh_attention(
                qk,
                v,
                n_hashes=n_hashes,
                bucket_size=bucket_size,
                causal=True,
                seed=0,
                backend=variant,
            )
            assert isinstance(out, torch.Tensor)  # no log-sum-exp asked for
            return out

        inputs = (qk, v)

    def call() -> None:
        for tensor_ in inputs:
            tensor_.grad = None
        attend().backward(grad_out)

    return call


def time_call(call: Callable[[], None], min_run_time: float) -> float:
    """Median milliseconds of ``call`` after one untimed warm call (compiles kernels)."""
    from torch.utils.benchmark import Timer

    call()
    timer = Timer(stmt="call()", globals={"call": call}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def run(
    lengths: list[int],
    device: str,
    dtype: str,
    min_run_time: float,
    on_measured: Callable[[dict[str, Any]], None] | None = None,
    **shape: Any,
) -> dict[str, Any]:
    """{variant: {L: ms or error text}} and the ratios per length; ``on_measured`` gets
    the partial result after every measurement."""
    times: dict[str, dict[int, float | str]] = {variant: {} for variant in VARIANTS}
    for seq_len in lengths:
        for variant in VARIANTS:
            try:
                call = make_call(
                    variant, seq_len, dtype=TORCH_DTYPES[dtype], device=device, **shape
                )
                times[variant][seq_len] = time_call(call, min_run_time)
            except Exception as exc:  # reported, and the other variants still run
                times[variant][seq_len] = f"{type(exc).__name__}: {str(exc)[:300]}"
            finally:
                if device == "cuda":
                    torch.cuda.empty_cache()
            value = times[variant][seq_len]
            shown = f"{value:.3f} ms" if isinstance(value, float) else value
            print(f"measured: {variant} at L={seq_len}: {shown}", flush=True)
            if on_measured is not None:
                on_measured(_result(times, lengths))
    return _result(times, lengths)


def _result(times: dict[str, dict[int, float | str]], lengths: list[int]) -> dict[str, Any]:
    measured = [n for n in lengths if all(n in times[v] for v in VARIANTS)]
    ratios = {
        seq_len: {
            "torch/triton": _ratio(times["torch"][seq_len], times["triton"][seq_len]),
            "sdpa_flash/triton": _ratio(times["sdpa_flash"][seq_len], times["triton"][seq_len]),
        }
        for seq_len in measured
    }
    return {"times_ms": {v: dict(t) for v, t in times.items()}, "ratios": ratios}


def _ratio(numerator: float | str, denominator: float | str) -> float | None:
    if isinstance(numerator, float) and isinstance(denominator, float) and denominator > 0:
        return numerator / denominator
    return None


def render(result: dict[str, Any]) -> str:
    lines = [
        "| L | "
        + " | ".join(f"{v} (ms)" for v in VARIANTS)
        + " | torch / triton | sdpa_flash / triton |",
        "|---|" + "---|" * (len(VARIANTS) + 2),
    ]
    notes = []
    for seq_len, ratio in result["ratios"].items():
        cells = []
        for variant in VARIANTS:
            value = result["times_ms"][variant][seq_len]
            if isinstance(value, float):
                cells.append(f"{value:.3f}")
            else:
                cells.append("-")
                notes.append(f"{variant} at L={seq_len}: {value}")
        shown = [f"{r:.2f}" if r is not None else "-" for r in ratio.values()]
        lines.append(f"| {seq_len} | " + " | ".join(cells + shown) + " |")
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suites.tools.kernel_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--lengths", type=lengths_argument, default="4096,8192,16384")
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(TORCH_DTYPES))
    parser.add_argument("--batch", type=int, default=1)
    # The attention shape of the model the suites measure (the "default" preset).
    model = PRESETS["default"]
    parser.add_argument("--heads", type=int, default=model.n_heads)
    parser.add_argument("--d-head", type=int, default=model.d_head)
    parser.add_argument("--n-hashes", type=int, default=model.n_hashes)
    parser.add_argument("--bucket-size", type=int, default=model.bucket_size)
    parser.add_argument(
        "--min-run-time",
        type=float,
        default=0.5,
        help="seconds of timed calls per variant and length",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args(argv)
    lengths: list[int] = args.lengths
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here; use --device cpu")
    shape = {
        "batch": args.batch,
        "heads": args.heads,
        "d_head": args.d_head,
        "n_hashes": args.n_hashes,
        "bucket_size": args.bucket_size,
    }
    env = environment(args.device) if args.out is not None else None

    def write(result: dict[str, Any]) -> None:
        if args.out is None:
            return
        record = {
            "device": args.device,
            "dtype": args.dtype,
            "lengths": lengths,
            **shape,
            **result,
            "environment": env,
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        partial = args.out.with_name(args.out.name + ".partial")
        partial.write_text(json.dumps(record, indent=1, default=str) + "\n")
        partial.replace(args.out)  # never a half-written file

    print(
        f"LSH-{args.n_hashes}, chunk {args.bucket_size}, d_head {args.d_head}, "
        f"{args.heads} heads, batch {args.batch}, {args.dtype}, fwd+bwd on {args.device}",
        flush=True,
    )
    result = run(lengths, args.device, args.dtype, args.min_run_time, on_measured=write, **shape)
    print(render(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

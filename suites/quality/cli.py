"""``python -m suites.quality [--data PATH] [--quick|--full] [--device ...] [--out DIR] ...``.

The quality suite through the harness (suites.run), plus ``--data PATH``: a file or
folder to train the byte LM on instead of the standard library sources. Checkpoints go
under ``<out>/quality/checkpoints/``. ``python -m suites.run quality`` runs the same
suite on the default corpus.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from suites.registry import GridContext


@dataclass(frozen=True, kw_only=True)
class QualityContext(GridContext):
    data: str | None = None  # byte-LM corpus: a file or folder; None = the stdlib sources
    out_dir: Path | None = None  # results directory; checkpoints go below it


def main(argv: list[str] | None = None) -> int:
    from suites.grids.quality import SUITE
    from suites.quality.corpus import load_corpus
    from suites.run import DEFAULT_OUT, default_max_memory_gb, resolve_device, run_sweep, summary

    parser = argparse.ArgumentParser(prog="python -m suites.quality",
                                     description="Quality suite: duplication task and byte LM.")
    parser.add_argument("--data", default=None,
                        help="file or folder for the byte LM (default: the Python stdlib)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode")
    size.add_argument("--full", action="store_const", const="full", dest="mode")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--max-memory-gb", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per point")
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
        if args.data is not None:
            load_corpus(args.data)  # a bad path fails here, before any point runs
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    ctx = QualityContext(device=device, mode=args.mode or "default", data=args.data,
                         out_dir=args.out)
    cap = args.max_memory_gb if args.max_memory_gb is not None else default_max_memory_gb(
        device)
    run_file = run_sweep(SUITE, ctx, out_dir=args.out, fresh=args.fresh, max_memory_gb=cap,
                         timeout_s=args.timeout, progress=not args.no_progress)
    print(summary(SUITE, ctx, run_file, cap), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

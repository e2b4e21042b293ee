"""The headline figures: what the README's results block says, computed from one run's rows.

Each :class:`Headline` names its suite and reads one run's rows (the newest row per point,
reports.load.latest_points) into a :class:`Reading`: the figure in words, its value, and
the rows it read; ``None`` when that run lacks the points it needs (another grid), so the
caller can try an older run. Lengths, depths and models in the words come from the rows,
so a run of another grid is described as it is, never as the README once said.

Time figures carry the report's marks: ``*`` when a row was measured under load
(suites.rows.busy), ``†`` when a time rests on fewer than 3 samples (suites.rows.samples).
reports.readme chooses the run of each headline and writes the block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from reports.render.document import fmt
from suites.rows.busy import MARK, row_is_busy
from suites.rows.names import PEER_PREFIX, label
from suites.rows.quality_matrix import final_accuracies
from suites.rows.samples import FEW_MARK, row_has_few_samples


@dataclass(frozen=True)
class Reading:
    figure: str
    value: str
    rows: pd.DataFrame  # the rows the value was read from


@dataclass(frozen=True)
class Headline:
    suite: str
    read: Callable[[pd.DataFrame], Reading | None]


def length(value: float) -> str:
    """1024 -> '1K', 1048576 -> '1M' (powers of two as a reader says them)."""
    number = int(value)
    for size, unit in ((2**20, "M"), (2**10, "K")):
        if number >= size and number % size == 0:
            return f"{number // size}{unit}"
    return str(number)


def _ok(rows: pd.DataFrame, **fields: object) -> pd.DataFrame:
    """The ok rows whose ``fields`` equal the values given (None: missing)."""
    keep = rows["status"] == "ok"
    for name, value in fields.items():
        if name not in rows:
            return rows.iloc[0:0]
        keep &= rows[name].isna() if value is None else rows[name] == value
    return rows[keep]


def _one(rows: pd.DataFrame, **fields: object) -> pd.Series | None:
    found = _ok(rows, **fields)
    return found.iloc[-1] if len(found) else None


def _timed(value: str, rows: list[pd.Series]) -> str:
    """A time value with the marks its rows earn: under load, too few samples."""
    records = [row.to_dict() for row in rows]
    marks = [MARK] if any(row_is_busy(r) for r in records) else []
    marks += [FEW_MARK] if any(row_has_few_samples(r) for r in records) else []
    return " ".join([value, *marks])


def _ratio(a: float, b: float) -> str:
    return fmt(a / b, 3)


def _reading(figure: str, value: str, rows: list[pd.Series]) -> Reading:
    return Reading(figure, value, pd.DataFrame(rows))


# memory: the main job


def _depth_growth(model: str, words: str) -> Callable[[pd.DataFrame], Reading | None]:
    def read(rows: pd.DataFrame) -> Reading | None:
        mine = _ok(rows, model=model, phase="train_step")
        depths = sorted(mine["n_layers"].dropna().unique())
        if len(depths) < 2:
            return None
        low, high = depths[0], depths[-1]
        shared = set(mine.loc[mine["n_layers"] == low, "seq_len"]) & set(
            mine.loc[mine["n_layers"] == high, "seq_len"]
        )
        if not shared:
            return None
        at = max(shared)
        a = _one(mine, n_layers=high, seq_len=at)
        b = _one(mine, n_layers=low, seq_len=at)
        assert a is not None and b is not None
        return _reading(
            f"{words} peak, {int(high)} / {int(low)} layers, training step at {length(at)}",
            f"{fmt(a['peak_mib'])} / {fmt(b['peak_mib'])} MiB "
            f"({_ratio(a['peak_mib'], b['peak_mib'])}x)",
            [a, b],
        )

    return read


def _materialised_runs_out(rows: pd.DataFrame) -> Reading | None:
    mine = rows[(rows["model"] == "transformer-full") & (rows["phase"] == "train_step")]
    if mine.empty:
        return None
    caps = mine["max_memory_gb"].dropna() if "max_memory_gb" in mine else pd.Series(dtype=float)
    cap = f", {fmt(caps.iloc[0])} GiB cap per point" if caps.nunique() == 1 else ""
    oom = mine[mine["status"] == "oom"]
    if oom.empty:
        longest = _ok(mine)["seq_len"].max()
        if pd.isna(longest):
            return None
        value = f"fits every length run, to {length(longest)}"
    else:
        value = f"out of memory from {length(oom['seq_len'].min())}"
    return Reading(f"materialised attention, training step{cap}", value, mine)


# time, peers, hashes, chunks: speed


def _lsh(rows: pd.DataFrame, n_hashes: int) -> pd.DataFrame:
    """LSH rows with ``n_hashes`` rounds, of one backend: the fused kernel where the suite
    also ran the torch path (what backend="auto" runs)."""
    mine = _ok(rows, attention="lsh", n_hashes=n_hashes)
    mine = mine[~mine["model"].astype(str).str.startswith(PEER_PREFIX)]  # ours only
    backends = set(mine["backend"].dropna()) if "backend" in mine else set()
    if len(backends) > 1:
        mine = mine[mine["backend"] == sorted(backends - {"torch"})[0]]
    return mine


def _backend(row: pd.Series) -> str:
    backend = row.get("backend")
    return f" ({backend} backend)" if isinstance(backend, str) and backend else ""


def _lsh_vs_sdpa(where: str, per_batch: bool) -> Callable[[pd.DataFrame], Reading | None]:
    def read(rows: pd.DataFrame) -> Reading | None:
        lsh = _lsh(rows, 4)
        sdpa = _ok(rows, attention="sdpa")
        shared = sorted(set(lsh["seq_len"]) & set(sdpa["seq_len"]))
        if not shared:
            return None
        at = shared[0] if where == "shortest" else shared[-1]
        a, b = lsh[lsh["seq_len"] == at].iloc[-1], sdpa[sdpa["seq_len"] == at].iloc[-1]
        tokens = length(a["batch"] * at)
        shape = f"{tokens} tokens per batch" if per_batch else f"batch {fmt(a['batch'])}"
        ratio = a["t_median_ms"] / b["t_median_ms"]
        verdict = ": SDPA faster" if ratio > 1 else ": LSH faster"
        return _reading(
            f"LSH-4{_backend(a)} / SDPA, one layer fwd+bwd, {shape}, at {length(at)}",
            _timed(
                f"{fmt(a['t_median_ms'])} / {fmt(b['t_median_ms'])} ms ({fmt(ratio, 3)}{verdict})",
                [a, b],
            ),
            [a, b],
        )

    return read


def _ours_vs_peer(peer: str, name: str, memory: bool) -> Callable[[pd.DataFrame], Reading | None]:
    def read(rows: pd.DataFrame) -> Reading | None:
        ours = _ok(rows, model="attn-lsh")
        theirs = _ok(rows, model=peer)
        shared = sorted(set(ours["seq_len"]) & set(theirs["seq_len"]))
        if not shared:
            return None
        at = shared[-1]
        a, b = ours[ours["seq_len"] == at].iloc[-1], theirs[theirs["seq_len"] == at].iloc[-1]
        value = _timed(
            f"{fmt(a['t_median_ms'])} / {fmt(b['t_median_ms'])} ms "
            f"({_ratio(a['t_median_ms'], b['t_median_ms'])})",
            [a, b],
        )
        if memory and pd.notna(a["peak_mib"]) and pd.notna(b["peak_mib"]):
            value += f"; peak {fmt(a['peak_mib'])} / {fmt(b['peak_mib'])} MiB"
        return _reading(
            f"ours / {name}, one LSH layer fwd+bwd, batch {fmt(a['batch'])}, at {length(at)}",
            value,
            [a, b],
        )

    return read


def _more_rounds(rows: pd.DataFrame) -> Reading | None:
    lsh = _ok(rows, attention="lsh")
    rounds = sorted(lsh["n_hashes"].dropna().unique())
    if len(rounds) < 2:
        return None
    at = lsh["seq_len"].max()
    a = _one(lsh, n_hashes=rounds[-1], seq_len=at)
    b = _one(lsh, n_hashes=rounds[0], seq_len=at)
    if a is None or b is None:
        return None
    return _reading(
        f"LSH-{int(rounds[-1])} / LSH-{int(rounds[0])}, one layer fwd+bwd at {length(at)}",
        _timed(
            f"{fmt(a['t_median_ms'])} / {fmt(b['t_median_ms'])} ms "
            f"({_ratio(a['t_median_ms'], b['t_median_ms'])}x)",
            [a, b],
        ),
        [a, b],
    )


def _chunk_sizes(rows: pd.DataFrame) -> Reading | None:
    # The bucket_size sweep is at the default slice budget (reports.sections.ablations).
    sweep = rows[rows["slice_elements"].isna()] if "slice_elements" in rows else rows
    lsh = _ok(sweep, attention="lsh")
    sizes = sorted(lsh["bucket_size"].dropna().unique())
    if len(sizes) < 2:
        return None
    at = lsh["seq_len"].max()
    a = _one(lsh, bucket_size=sizes[-1], seq_len=at)
    b = _one(lsh, bucket_size=sizes[0], seq_len=at)
    if a is None or b is None:
        return None
    return _reading(
        f"chunk {int(sizes[-1])} / chunk {int(sizes[0])}, LSH-{fmt(a['n_hashes'])}"
        f"{_backend(a)} at {length(at)}",
        _timed(f"{fmt(a['t_median_ms'])} / {fmt(b['t_median_ms'])} ms", [a, b]),
        [a, b],
    )


# reversible, decode, scale


def _flat_in_depth(rows: pd.DataFrame) -> Reading | None:
    unchunked = _ok(rows, ff_chunks=1, phase="train_step")
    found = {}
    for model in ("reformer-lsh-rev", "reformer-lsh"):
        mine = unchunked[unchunked["model"] == model]
        depths = sorted(mine["n_layers"].dropna().unique())
        if len(depths) < 2:
            return None
        found[model] = (mine, depths[0], depths[-1])
    mine, low, high = found["reformer-lsh-rev"]
    at = mine["seq_len"].max()
    a, b = _one(mine, n_layers=high, seq_len=at), _one(mine, n_layers=low, seq_len=at)
    plain, plain_low, plain_high = found["reformer-lsh"]
    c = _one(plain, n_layers=plain_high, seq_len=at)
    d = _one(plain, n_layers=plain_low, seq_len=at)
    if a is None or b is None or c is None or d is None:
        return None
    return _reading(
        f"reversible LSH peak, {int(high)} / {int(low)} layers at {length(at)} "
        f"(not reversible: {fmt(c['peak_mib'])} / {fmt(d['peak_mib'])} MiB)",
        f"{fmt(a['peak_mib'])} / {fmt(b['peak_mib'])} MiB "
        f"({_ratio(a['peak_mib'], b['peak_mib'])}x)",
        [a, b, c, d],
    )


def _decode(where: str) -> Callable[[pd.DataFrame], Reading | None]:
    def read(rows: pd.DataFrame) -> Reading | None:
        if "batch" in rows:  # the headline compares one sequence at a time
            rows = rows[rows["batch"].fillna(1) == 1]
        lsh, kv = _ok(rows, cache="lsh"), _ok(rows, cache="kv")
        shared = sorted(set(lsh["seq_len"]) & set(kv["seq_len"]))
        if not shared:
            return None
        at = shared[0] if where == "shortest" else shared[-1]
        a, b = lsh[lsh["seq_len"] == at].iloc[-1], kv[kv["seq_len"] == at].iloc[-1]
        return _reading(
            f"decode ms per token, LSH cache / SDPA KV cache, at {length(at)} context",
            _timed(f"{fmt(a['t_median_ms'])} / {fmt(b['t_median_ms'])}", [a, b]),
            [a, b],
        )

    return read


def _longest_run(rows: pd.DataFrame) -> Reading | None:
    plain = rows[rows["autocast"].isna()] if "autocast" in rows else rows
    ok = _ok(plain)
    if ok.empty:
        return None
    depth = ok["n_layers"].min()
    mine = ok[ok["n_layers"] == depth]
    best = mine.loc[mine["seq_len"].idxmax()]
    return _reading(
        f"longest training step run ({int(depth)} layers; lengths run, no boundary searched)",
        _timed(
            f"{length(best['seq_len'])}: peak {fmt(best['peak_mib'])} MiB, "
            f"{fmt(best['t_median_ms'] / 1e3)} s{_backend(best)}",
            [best],
        ),
        [best],
    )


# quality


def _duplication(rows: pd.DataFrame) -> Reading | None:
    records = [r for r in rows.to_dict("records") if r.get("status") == "ok"]
    finals = final_accuracies(records)
    lsh = [f for f in finals if f.trained == f.evaluated == "lsh-4"]
    # Full attention in the task's shared-QK form (suites.rows.names spells it "Full").
    full = [f for f in finals if label(f.trained) == label(f.evaluated) == "Full"]
    if not lsh:
        return None
    seeds = len(lsh)
    mean = sum(f.accuracy for f in lsh) / seeds
    value = f"{fmt(mean)}%" + (
        f" (full attention: {fmt(sum(f.accuracy for f in full) / len(full))}%)" if full else ""
    )
    used = pd.DataFrame([dict(f.row) for f in lsh + full])
    task_length = fmt(used["seq_len"].iloc[0]) if "seq_len" in used else "?"
    return Reading(
        f"duplication task L {task_length}, trained and evaluated with LSH-4 "
        f"({seeds} seed{'s' if seeds != 1 else ''})",
        value,
        used,
    )


def _bits_per_byte(rows: pd.DataFrame) -> Reading | None:
    lm = _ok(rows, task="bytes")
    if lm.empty or "step" not in lm:
        return None

    def final(**fields: object) -> pd.Series | None:
        mine = _ok(lm, **fields).dropna(subset=["bits_per_byte"])
        return mine.sort_values("step", kind="stable").iloc[-1] if len(mine) else None

    ours = final(model="reformer-lsh-rev", train_attention="lsh-4", eval_attention="lsh-4")
    theirs = final(model="transformer-sdpa")
    if ours is None or theirs is None:
        return None
    return _reading(
        "byte LM bits per byte, Reformer LSH-4 / Transformer (SDPA)",
        f"{fmt(ours['bits_per_byte'])} / {fmt(theirs['bits_per_byte'])}",
        [ours, theirs],
    )


HEADLINES: tuple[Headline, ...] = (
    Headline("memory", _depth_growth("reformer-lsh-rev", "reversible LSH")),
    Headline("memory", _depth_growth("reformer-lsh", "non-reversible LSH")),
    Headline("memory", _materialised_runs_out),
    Headline("time", _lsh_vs_sdpa("shortest", per_batch=True)),
    Headline("time", _lsh_vs_sdpa("longest", per_batch=True)),
    Headline("peers", _lsh_vs_sdpa("shortest", per_batch=False)),
    Headline("peers", _ours_vs_peer("peer-reformer-pytorch", "reformer-pytorch", memory=False)),
    Headline("peers", _ours_vs_peer("peer-hf", "HF transformers", memory=True)),
    Headline("hashes", _more_rounds),
    Headline("chunks", _chunk_sizes),
    Headline("reversible", _flat_in_depth),
    Headline("decode", _decode("shortest")),
    Headline("decode", _decode("longest")),
    Headline("scale", _longest_run),
    Headline("quality", _duplication),
    Headline("quality", _bits_per_byte),
)

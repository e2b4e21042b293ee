"""The analytic memory model of Reformer Table 3 (Kitaev et al., ICLR 2020, sec. 5).

Table 3 gives the activation memory of each model as a count of stored numbers:

    Transformer                     max(b·l·d_ff, b·n_h·l²) · n_l
    Reversible Transformer          max(b·l·d_ff, b·n_h·l²)
    Chunked Reversible Transformer  max(b·l·d_model, b·n_h·l²)
    LSH Transformer                 max(b·l·d_ff, b·n_h·l·n_r·c) · n_l
    Reformer                        max(b·l·d_model, b·n_h·l·n_r·c)

b batch, l length, n_h heads, n_l layers, n_r hash rounds, c chunk (bucket) size. Each
switch acts on one factor: reversibility drops the ·n_l, chunked FF replaces d_ff by d_model,
LSH replaces l² by l·n_r·c. The three combinations the table leaves out (chunked FF without
reversibility, reversible LSH without chunking, chunked LSH without reversibility) follow
from the same rule and are flagged as extrapolations. SDPA is charged the full l² term, as
Table 3 has no row for fused kernels; a ratio far below 1 shows the kernel avoids it.
Local attention (LSH's chunks in position order, one round) is charged the LSH term with
n_r = 1, under the LSH row's name with "LSH" read as "local", flagged as not in the table.
It is an order-of-magnitude model: the ratio measured / analytic shows the constant.

The report's section (:func:`build_analytic`) evaluates it for every measured config with
a whole model, beside the measured peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.context import ReportContext
from reports.render.document import Block, Paragraph, Table, fmt
from suites.rows.names import ATTENTIONS

# The suites whose ok points carry a whole config the model can be evaluated on.
ANALYTIC_SUITES = ("memory", "reversible", "scale")

DTYPE_BYTES = {
    "float32": 4,
    "fp32": 4,
    "float": 4,
    "float16": 2,
    "fp16": 2,
    "half": 2,
    "bfloat16": 2,
    "bf16": 2,
    "float64": 8,
    "fp64": 8,
    "double": 8,
}
_NAMES = {
    # (lsh, reversible, chunked ff): (Table 3 row, in the table)
    (False, False, False): ("Transformer", True),
    (False, True, False): ("Reversible Transformer", True),
    (False, True, True): ("Chunked Reversible Transformer", True),
    (True, False, False): ("LSH Transformer", True),
    (True, True, True): ("Reformer", True),
    (False, False, True): ("Chunked Transformer", False),
    (True, True, False): ("Reversible LSH Transformer", False),
    (True, False, True): ("Chunked LSH Transformer", False),
}


@dataclass(frozen=True)
class Table3Estimate:
    row: str  # Table 3 row name the config maps to
    in_table3: bool  # False: an extrapolation of the table's rule, not one of its rows
    elements: int  # stored activations (numbers)

    def mebibytes(self, dtype: str) -> float:
        """The stored activations in MiB (2**20 bytes), as the rows' *_mib columns."""
        return self.elements * dtype_bytes(dtype) / 2**20


def table3_memory(
    *,
    batch: int,
    seq_len: int,
    d_model: int,
    d_ff: int,
    n_heads: int,
    n_layers: int,
    attention: str,
    reversible: bool,
    ff_chunks: int = 1,
    n_hashes: int = 1,
    bucket_size: int = 64,
) -> Table3Estimate:
    """Activation count of Table 3 for one config (see module docstring for the formulas)."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention={attention!r} is unknown; allowed: {ATTENTIONS}")
    for name, value in (
        ("batch", batch),
        ("seq_len", seq_len),
        ("d_model", d_model),
        ("d_ff", d_ff),
        ("n_heads", n_heads),
        ("n_layers", n_layers),
        ("ff_chunks", ff_chunks),
        ("n_hashes", n_hashes),
        ("bucket_size", bucket_size),
    ):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    lsh = attention in ("lsh", "local")  # chunked attention: the l·n_r·c term
    rounds = int(n_hashes) if attention == "lsh" else 1
    chunked = ff_chunks > 1
    b, length, n_h = int(batch), int(seq_len), int(n_heads)
    ff_term = b * length * int(d_model if chunked else d_ff)
    attention_term = b * n_h * length * (rounds * int(bucket_size) if lsh else length)
    elements = max(ff_term, attention_term) * (1 if reversible else int(n_layers))
    row, in_table3 = _NAMES[(lsh, bool(reversible), chunked)]
    if attention == "local":
        row = "Reformer (local)" if row == "Reformer" else row.replace("LSH", "Local")
        in_table3 = False
    return Table3Estimate(row=row, in_table3=in_table3, elements=elements)


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of 'float32', 'torch.bfloat16', 'fp16', ..."""
    key = str(dtype).removeprefix("torch.").lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"dtype={dtype!r} is unknown; allowed: {sorted(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


def analytic_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 3's estimate beside the measured peak for every ok memory point."""
    found = []
    needed = [
        "batch",
        "seq_len",
        "d_model",
        "d_ff",
        "n_heads",
        "n_layers",
        "attention",
        "reversible",
        "dtype",
        "peak_mib",
    ]
    usable = rows[rows["suite"].isin(ANALYTIC_SUITES) & (rows["status"] == "ok")]
    for row in usable.dropna(subset=needed).to_dict("records"):
        try:
            estimate = table3_memory(
                batch=row["batch"],
                seq_len=row["seq_len"],
                d_model=row["d_model"],
                d_ff=row["d_ff"],
                n_heads=row["n_heads"],
                n_layers=row["n_layers"],
                attention=row["attention"],
                reversible=row["reversible"] in (True, "true", 1),
                ff_chunks=row["ff_chunks"] if pd.notna(row["ff_chunks"]) else 1,
                n_hashes=row["n_hashes"] if pd.notna(row["n_hashes"]) else 1,
                bucket_size=row["bucket_size"] if pd.notna(row["bucket_size"]) else 1,
            )
            analytic_mib = estimate.mebibytes(row["dtype"])
        except ValueError:
            continue  # a config outside the model (unknown attention or dtype)
        found.append(
            {
                "suite": row["suite"],
                "model": row["model"],
                "phase": row["phase"],
                "L": fmt(row["seq_len"]),
                "batch": fmt(row["batch"]),
                "layers": fmt(row["n_layers"]),
                "Table 3 row": estimate.row + ("" if estimate.in_table3 else " *"),
                "analytic (MiB)": fmt(analytic_mib),
                "peak (MiB)": fmt(row["peak_mib"]),
                "peak / analytic": fmt(row["peak_mib"] / analytic_mib),
                "saved / analytic": fmt(row["saved_mib"] / analytic_mib)
                if pd.notna(row["saved_mib"])
                else "",
            }
        )
    return pd.DataFrame(found)


def build_analytic(ctx: ReportContext) -> list[Block] | None:
    table = analytic_table(ctx.rows)
    if table.empty:
        return None
    return [
        Paragraph(
            "Reformer Table 3 memory model evaluated for each measured config "
            f"(suites {', '.join(ANALYTIC_SUITES)}), beside the measured peak. The model "
            "counts activations only, to an order of magnitude; the ratio shows the "
            "constant it leaves out (weights, optimiser state, allocator and runtime)."
        ),
        Table(
            table,
            "* not a row of Table 3: the same rule applied to a combination the "
            "table leaves out. SDPA is charged the l² term.",
            index=False,
        ),
    ]

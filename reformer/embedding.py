"""Positional embeddings: a learned table, or the factorised (axial) table for long inputs.

A learned table holds max_seq_len · d_model parameters: at 2^20 positions and d_model 256
that is 1 GiB of weights (plus gradient and two Adam moments). The axial embedding, which
the Reformer's reference code (trax) uses for long sequences, factorises position
p = i · a2 + j (``axial_shape = (a1, a2)``, a1 · a2 >= max_seq_len) into two small tables
and *concatenates* their rows: emb(p) = [E1[i] (d1), E2[j] (d2)], d1 + d2 = d_model, with
d1 = d_model // 2. It holds a1 · d1 + a2 · d2 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from reformer.config import ReformerConfig

# Same init scale as the other weights (GPT-2 style), so no table dominates the sum.
_INIT_STD = 0.02


class LearnedPositionalEmbedding(nn.Module):
    """One learned vector per position: (max_seq_len, d_model) parameters."""

    def __init__(self, max_seq_len: int, d_model: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_seq_len, d_model) * _INIT_STD)

    def forward(self, seq_len: int) -> torch.Tensor:
        """(L, d_model) embeddings of positions 0 .. L-1 (a view, no copy)."""
        return self.weight[:seq_len]

    def positions(self, start: int, end: int) -> torch.Tensor:
        """(end - start, d_model) embeddings of positions start .. end-1 (decoding)."""
        return self.weight[start:end]

    def at(self, index: torch.Tensor) -> torch.Tensor:
        """Embeddings (*index.shape, d_model) of the positions ``index`` (any shape, int64):
        a ragged batch's rows count positions from their own first real token."""
        return self.weight[index]


class AxialPositionalEmbedding(nn.Module):
    """Position p = i·a2 + j embeds as [E1[i], E2[j]]: (a1·d1 + a2·d2) parameters."""

    def __init__(self, axial_shape: tuple[int, int], d_model: int) -> None:
        super().__init__()
        rows, cols = axial_shape
        first_dim = d_model // 2
        self.axial_shape = (rows, cols)
        self.row = nn.Parameter(torch.randn(rows, first_dim) * _INIT_STD)
        self.col = nn.Parameter(torch.randn(cols, d_model - first_dim) * _INIT_STD)

    def forward(self, seq_len: int) -> torch.Tensor:
        """(L, d_model) embeddings of positions 0 .. L-1."""
        rows, cols = self.axial_shape
        used_rows = -(-seq_len // cols)  # only the rows the sequence reaches
        grid = torch.cat(
            [
                self.row[:used_rows, None, :].expand(-1, cols, -1),
                self.col[None, :, :].expand(used_rows, -1, -1),
            ],
            dim=-1,
        )  # (used_rows, a2, d_model)
        return grid.reshape(used_rows * cols, -1)[:seq_len]

    def positions(self, start: int, end: int) -> torch.Tensor:
        """(end - start, d_model) embeddings of positions start .. end-1, built from those
        rows only (decoding one token must not build the table up to it)."""
        return self.at(torch.arange(start, end, device=self.row.device))

    def at(self, index: torch.Tensor) -> torch.Tensor:
        """Embeddings (*index.shape, d_model) of the positions ``index`` (any shape, int64),
        built from those rows only."""
        cols = self.axial_shape[1]
        return torch.cat([self.row[index // cols], self.col[index % cols]], dim=-1)


def build_positional_embedding(config: ReformerConfig) -> nn.Module:
    """Axial when ``config.axial_shape`` is set, else a learned (max_seq_len, d) table."""
    if config.axial_shape is not None:
        rows, cols = config.axial_shape
        return AxialPositionalEmbedding((rows, cols), config.d_model)
    return LearnedPositionalEmbedding(config.max_seq_len, config.d_model)

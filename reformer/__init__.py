"""Reformer (Kitaev, Kaiser, Levskaya, ICLR 2020): LSH attention, reversible layers, chunked FF."""

from reformer.config import PRESETS, ReformerConfig
from reformer.lsh import LSHSelfAttention, lsh_attention
from reformer.model import ReformerLM

__all__ = ["PRESETS", "LSHSelfAttention", "ReformerConfig", "ReformerLM", "lsh_attention"]

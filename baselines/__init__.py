"""Baselines the Reformer is measured against."""

from baselines.transformer import TransformerLM

__all__ = ["TransformerLM"]

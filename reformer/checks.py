"""Argument checks shared by the attention layers, the models and the LSH functions.

Each raises ValueError naming the argument and what it allows, so a bad call fails at its
boundary rather than as a shape error deep inside a matmul.
"""

from __future__ import annotations

import torch


def require_bool(name: str, value: object) -> None:
    """A switch must be a real bool: a string such as "false" or "no" is truthy, so it
    would silently switch the feature on."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be True or False (a bool)")


def check_layer_input(x: object, d_model: int) -> None:
    """An attention layer's input must be (B, L, d_model); say so, not a matmul error."""
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be (B, L, d_model={d_model}); got {got}")


def check_n_hashes(n_hashes: object, attention: str) -> None:
    """A per-call ``n_hashes`` must be None or an int >= 1, and only LSH attention hashes."""
    if n_hashes is None:
        return
    if isinstance(n_hashes, bool) or not isinstance(n_hashes, int) or n_hashes < 1:
        raise ValueError(f"n_hashes={n_hashes!r} must be None or an int >= 1 (hash rounds)")
    if attention != "lsh":
        raise ValueError(
            f"n_hashes={n_hashes} is for attention='lsh' (hash rounds); this model's "
            f"attention={attention!r} does not hash: leave n_hashes=None"
        )


def check_call(
    x: torch.Tensor,
    padding_mask: object,
    n_hashes: object,
    exact: object,
    *,
    attention: str,
) -> None:
    """Raise ValueError naming the argument unless a layer's (or model's) per-call
    arguments fit x (B, L, ...): ``padding_mask`` None or (B, L) bool, ``n_hashes`` None or
    an int >= 1 (LSH attention only), ``exact`` a bool, not both n_hashes and exact."""
    check_padding_mask(padding_mask, tuple(x.shape[:2]))
    check_n_hashes(n_hashes, attention)
    require_bool("exact", exact)
    if exact and n_hashes is not None:
        raise ValueError(
            f"exact=True uses no hash rounds; give n_hashes={n_hashes} or exact=True, not both"
        )


def check_padding_mask(padding_mask: object, batch_and_length: tuple[int, ...]) -> None:
    """``padding_mask`` must be None or a (B, L) torch.bool tensor, True at real tokens."""
    if padding_mask is None:
        return
    if not isinstance(padding_mask, torch.Tensor):
        raise ValueError(
            f"padding_mask must be a (B, L) torch.bool tensor (True at real tokens) or None; "
            f"got {type(padding_mask).__name__}"
        )
    if padding_mask.dtype != torch.bool:
        raise ValueError(
            f"padding_mask dtype {padding_mask.dtype} must be torch.bool (True at real tokens)"
        )
    if tuple(padding_mask.shape) != batch_and_length:
        raise ValueError(
            f"padding_mask shape {tuple(padding_mask.shape)} must be (B, L) = {batch_and_length}"
        )


def check_slice_elements(slice_elements: object) -> None:
    """The torch path's logits per batched op: an int >= 1 (not a bool)."""
    if (
        isinstance(slice_elements, bool)
        or not isinstance(slice_elements, int)
        or slice_elements < 1
    ):
        raise ValueError(
            f"slice_elements={slice_elements!r} must be an int >= 1 (logits per slice)"
        )

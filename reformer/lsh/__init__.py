"""LSH attention (Reformer sec. 2): the functional API, the layer, and its backends.

- ``attention``: :func:`lsh_attention` and :class:`LSHSelfAttention`, what callers use.
- ``hashing``: the angular hash that puts positions in buckets.
- ``layout``: what every backend shares (the chunked layout of a call, the self and mask
  logits, small tensor helpers).
- ``dispatch``: which backend a call runs ("auto", "torch", "triton", "cpu") and why.
- ``torch_path``, ``triton``, ``cpu``: the backends, one folder each, every one an autograd
  Function with the same inputs and the same result.
"""

from reformer.lsh.attention import LSHSelfAttention, lsh_attention
from reformer.lsh.dispatch import BACKENDS, resolve_backend

__all__ = ["BACKENDS", "LSHSelfAttention", "lsh_attention", "resolve_backend"]

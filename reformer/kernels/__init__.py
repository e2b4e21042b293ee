"""Fused Triton kernels for LSH attention (Reformer sec. 2). Importing this package needs
the ``triton`` package; ``reformer.backends`` decides when it is used."""

from reformer.kernels.function import KernelConfig, TritonLSHFunction, kernel_config

__all__ = ["KernelConfig", "TritonLSHFunction", "kernel_config"]

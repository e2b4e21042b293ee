"""Fused Triton kernels for LSH attention (Reformer sec. 2).

``function.TritonLSHFunction`` (needs triton) is the autograd Function; ``config`` holds
the launch shapes; ``aot`` compiles the kernels for sm_80 / sm_90 without a GPU.
``reformer.backends`` decides when the kernels are used.
"""

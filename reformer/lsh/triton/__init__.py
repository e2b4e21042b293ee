"""Fused Triton kernels for LSH attention (Reformer sec. 2).

``kernels`` holds the three launched kernels (forward, dq, dk̂/dv, one launch per round)
and ``tiles`` the helpers they inline; ``function.TritonLSHFunction`` (needs triton) is
the autograd Function and builds the launches; ``config`` holds the launch shapes (tiles,
warps, grid, dot precision); ``aot`` compiles the launches' real specialisations for
sm_80 / sm_90 without a GPU; ``probe`` checks once that Triton can launch here.
``reformer.lsh.dispatch`` decides when the kernels are used.
"""

"""The fused CPU kernel of LSH attention (``backend="cpu"``): C source, its on-demand
build, and the autograd Function around it."""

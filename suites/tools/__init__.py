"""Stand-alone tools beside the suites: the memory ledger, the kernel and Ray benchmarks
and the GPU check script."""

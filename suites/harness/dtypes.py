"""The torch dtype of each dtype name a row records (suites.harness.spec.DTYPES).

Its own module so the step builder, the backend choice, the efficiency probe and the kernel
benchmark share one table without importing each other.
"""

from __future__ import annotations

import torch

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

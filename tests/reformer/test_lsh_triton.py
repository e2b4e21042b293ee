"""The Triton LSH kernels, run by ``lsh_triton_cases.py`` in a child process.

TRITON_INTERPRET must be set before triton is imported, and the ahead-of-time compile
test needs the compiled (not interpreted) kernels, so the interpreter run happens in its
own process and the rest of the suite never sees the variable. With CUDA present the same
cases also run on the GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

CASES = Path(__file__).with_name("lsh_triton_cases.py")
ROOT = Path(__file__).resolve().parents[2]


def _run_cases(interpret: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(CASES),
        "-q",
        "-p",
        "no:cacheprovider",
        "--durations=3",
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} failed:\n{result.stdout[-8000:]}\n{result.stderr[-4000:]}"
    )


def test_kernels_match_reference_in_the_interpreter():
    _run_cases(interpret=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_kernels_match_reference_on_the_gpu():
    _run_cases(interpret=False)

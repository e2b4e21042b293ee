"""Build and load the fused CPU kernel (``lsh_cpu.c``) on first use.

The kernel is plain C (GNU vector extensions, no Python or torch headers), compiled once
per machine with the system's C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) for
the CPU it runs on (``-march=native``) and loaded with ``ctypes``. The shared library is
cached under ``$REFORMER_CACHE_DIR`` (default ``$XDG_CACHE_HOME/reformer-bench``, else
``~/.cache/reformer-bench``), named by a hash of the source, the flags, the compiler and
the CPU's feature flags, so an edit, another compiler or another CPU kind builds afresh
and a stale binary is never loaded. A compile takes about a second.

Nothing here is needed by the default install: where no compiler is found or the build
fails, ``cpu_kernel_unavailable`` says why and LSH attention runs the torch path.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

SOURCE = Path(__file__).with_name("lsh_cpu.c")
FLAGS = ("-std=gnu11", "-O3", "-march=native", "-shared", "-fPIC")
# Compilers that reject -march=native (some cross or non-x86 toolchains) get a portable
# build: slower vector code, the same results.
PORTABLE_FLAGS = ("-std=gnu11", "-O3", "-shared", "-fPIC")


class KernelUnavailable(RuntimeError):
    """The fused CPU kernel cannot be built or loaded here; the message says why."""


def find_compiler() -> str | None:
    """The C compiler to use: ``$CC``, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        return os.environ["CC"]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def cache_dir() -> Path:
    """Where built kernels are kept (see the module docstring)."""
    if os.environ.get("REFORMER_CACHE_DIR"):
        return Path(os.environ["REFORMER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "reformer-bench"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (-march=native code is only valid on a CPU that
    has every feature the compiler saw)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() + platform.processor()
    keep = [
        line
        for line in text.splitlines()
        if line.split(":")[0].strip() in ("flags", "Features", "model name", "vendor_id")
    ]
    return "\n".join(sorted(set(keep)))


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KernelUnavailable(f"the C compiler {compiler!r} cannot run: {exc}") from exc
    return done.stdout


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> str | None:
    """Compile SOURCE into target atomically; None on success, else the compiler's
    complaint."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    except OSError as exc:
        return f"cannot write the kernel cache {target.parent} ({exc}); set $REFORMER_CACHE_DIR"
    os.close(handle)
    try:
        done = subprocess.run(
            [compiler, *flags, "-o", partial, str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            return (done.stderr or done.stdout).strip()[-2000:]
        # Several processes may build at once; each renames a complete file into place.
        os.replace(partial, target)
        return None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def library_path() -> Path:
    """The cached shared library for this source, compiler and CPU, built if missing.
    Raises KernelUnavailable when there is no compiler or the build fails."""
    compiler = find_compiler()
    if compiler is None:
        raise KernelUnavailable("no C compiler found ($CC, cc, gcc or clang)")
    version = _compiler_version(compiler)
    errors = []
    for flags in (FLAGS, PORTABLE_FLAGS):
        digest = hashlib.sha256(
            "\0".join([SOURCE.read_text(), *flags, version, _cpu_signature()]).encode()
        ).hexdigest()[:20]
        target = cache_dir() / f"lsh_cpu-{digest}.so"
        if target.exists():
            return target
        complaint = _compile(compiler, flags, target)
        if complaint is None:
            return target
        errors.append(f"{' '.join(flags)}: {complaint}")
    raise KernelUnavailable(
        f"compiling {SOURCE.name} with {compiler} failed: " + " | ".join(errors)
    )


class Args(ctypes.Structure):
    """Mirror of the C ``Args`` struct (field for field, in order)."""

    _fields_: ClassVar[Any] = [
        (name, ctypes.c_int64)
        for name in (
            "batch",
            "heads",
            "length",
            "dim",
            "dim_v",
            "rounds",
            "bucket_size",
            "chunks_per_round",
            "total",
            "causal",
            "has_valid",
            "counts",
            "look_back",
        )
    ] + [
        ("scale", ctypes.c_float),
        ("qk", ctypes.c_void_p),
        ("qk_sb", ctypes.c_int64),
        ("qk_sh", ctypes.c_int64),
        ("qk_sl", ctypes.c_int64),
        ("v", ctypes.c_void_p),
        ("v_sb", ctypes.c_int64),
        ("v_sh", ctypes.c_int64),
        ("v_sl", ctypes.c_int64),
        ("sort", ctypes.c_void_p),
        ("chunk_of", ctypes.c_void_p),
        ("valid", ctypes.c_void_p),
        ("out", ctypes.c_void_p),
        ("out_sb", ctypes.c_int64),
        ("out_sh", ctypes.c_int64),
        ("out_sl", ctypes.c_int64),
        ("row_max", ctypes.c_void_p),
        ("row_sum", ctypes.c_void_p),
        ("grad_out", ctypes.c_void_p),
        ("go_sb", ctypes.c_int64),
        ("go_sh", ctypes.c_int64),
        ("go_sl", ctypes.c_int64),
        ("delta", ctypes.c_void_p),
        ("inv_sum", ctypes.c_void_p),
        ("grad_q", ctypes.c_void_p),
        ("gq_sb", ctypes.c_int64),
        ("gq_sh", ctypes.c_int64),
        ("gq_sl", ctypes.c_int64),
        ("grad_v", ctypes.c_void_p),
        ("gv_sb", ctypes.c_int64),
        ("gv_sh", ctypes.c_int64),
        ("gv_sl", ctypes.c_int64),
    ]


@functools.cache
def load_kernel() -> ctypes.CDLL:
    """The loaded kernel library (built on first use; cached per process).
    Raises KernelUnavailable with the reason when it cannot be built or loaded."""
    path = library_path()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise KernelUnavailable(f"loading {path} failed: {exc}") from exc
    run = lib.lsh_cpu_run
    run.argtypes = [
        ctypes.POINTER(Args),
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_int64),
    ]
    run.restype = ctypes.c_int
    return lib


@functools.cache
def cpu_kernel_unavailable() -> str | None:
    """None when the fused CPU kernel can run in this process, else why not (probed once)."""
    try:
        load_kernel()
    except KernelUnavailable as exc:
        return str(exc)
    return None

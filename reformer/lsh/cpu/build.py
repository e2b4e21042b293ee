"""Build and load the fused CPU kernel (``lsh_cpu.c``) on first use.

The kernel is plain C (GNU vector extensions, no Python or torch headers), compiled once
per machine with the system's C compiler for the CPU it runs on (``-march=native``) and
loaded with ``ctypes``. The compiler is ``$CC``, split into words as a shell would (so
``CC="ccache gcc"`` works), else ``cc``, ``gcc`` or ``clang``; it must have
``__builtin_convertvector``: GCC 9 or later, or clang 3.4 or later. An older GCC is named
in the reason without a compile. A compile takes about a second.

The cache. Built libraries are kept under ``$REFORMER_CACHE_DIR`` (default
``$XDG_CACHE_HOME/reformer-bench``, else ``~/.cache/reformer-bench``), named by a hash of
the source, the flags, the compiler's version and the CPU's model and feature flags, so an
edit, another compiler or another CPU kind builds afresh. Where the CPU's features cannot be
read (no ``/proc/cpuinfo``: macOS, some sandboxes) the build is portable (no
``-march=native``) and keyed by the machine type alone, so a library built for one CPU is
never found on another.

Loading a library runs its code, so nothing is loaded that this user did not build here:

- the folder is created 0700, and refused when another user owns it or group or others
  may write to it (anyone who can write there could plant a library);
- each library's SHA-256 and the CPU features it was built for are recorded beside it
  (``<name>.so.json``, written after it); a library is opened without following symbolic
  links, must be a regular file of this user's that nobody else may write, and is loaded
  only when its bytes match the record and this CPU has every feature in it. It is loaded
  from the open descriptor (``/proc/self/fd``, where that exists), so the bytes checked
  are the bytes loaded. A library that does not match (truncated, say) is built again.
- A refused folder or file means the torch path, with the reason.

A compile that fails is remembered beside where its library would be (``<name>.failed``,
holding the compiler's complaint), so later processes (every point of a sweep) neither
compile again nor retry ``-march=native`` where the compiler rejects it; delete the file to
try again.

Nothing here is needed by the default install: where no compiler is found or anything
fails, ``cpu_kernel_unavailable`` says why (asked once per process: a failure is remembered
as a success is) and LSH attention runs the torch path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

SOURCE = Path(__file__).with_name("lsh_cpu.c")
FLAGS = ("-std=gnu11", "-O3", "-march=native", "-shared", "-fPIC")
# Compilers that reject -march=native (some cross or non-x86 toolchains), and CPUs whose
# features cannot be read, get a portable build: slower vector code, the same results.
PORTABLE_FLAGS = ("-std=gnu11", "-O3", "-shared", "-fPIC")
COMPILE_TIMEOUT_S = 300
# The oldest GCC with __builtin_convertvector (clang has had it since 3.4).
MIN_GCC = 9
MIN_COMPILER = f"GCC {MIN_GCC} or later, or clang 3.4 or later"
CPUINFO = Path("/proc/cpuinfo")
NO_COMPILER = "no C compiler found ($CC, cc, gcc or clang)"


class KernelUnavailable(RuntimeError):
    """The fused CPU kernel cannot be built or loaded here; the message says why."""


def find_compiler() -> list[str] | None:
    """The C compiler's command: ``$CC`` split into words as a shell would ("ccache gcc"
    is two), else the first of cc, gcc, clang on PATH; None when there is none."""
    configured = os.environ.get("CC", "")
    if configured.strip():
        try:
            return shlex.split(configured)
        except ValueError:  # unbalanced quotes: run as one word, and say so when it fails
            return [configured]
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def cache_dir() -> Path:
    """Where built kernels are kept (see the module docstring). Raises KernelUnavailable
    when neither variable is set and this user has no home folder."""
    if os.environ.get("REFORMER_CACHE_DIR"):
        return Path(os.environ["REFORMER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError as exc:  # HOME unset and no passwd entry
            raise KernelUnavailable(
                f"no home folder to keep the built kernel in ({exc}); set $REFORMER_CACHE_DIR"
            ) from exc
    return Path(base) / "reformer-bench"


def _not_private(info: os.stat_result) -> str | None:
    """Why a file or folder with this stat could hold something another user put there."""
    if info.st_uid != os.geteuid():
        return f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    writable = [
        who
        for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
        if info.st_mode & bit
    ]
    if writable:
        return f"is writable by {' and '.join(writable)} (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def private_cache_dir() -> Path:
    """``cache_dir()``, created 0700 where missing. Raises KernelUnavailable when it cannot
    be made, or when another user owns it or group or others may write to it."""
    folder = cache_dir()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(folder)
    except OSError as exc:
        raise KernelUnavailable(
            f"cannot write the kernel cache {folder} ({exc}); set $REFORMER_CACHE_DIR"
        ) from exc
    problem = _not_private(info)
    if problem is not None:
        raise KernelUnavailable(
            f"the kernel cache {folder} {problem}, so another user could plant a library "
            "there that would run in this process; refusing it (chmod go-w it if it is "
            "yours, or set $REFORMER_CACHE_DIR to a folder of your own)"
        )
    return folder


def _open_private(path: Path) -> int | None:
    """A read-only descriptor of ``path``, opened without following a symbolic link; None
    when it does not exist. Raises KernelUnavailable when it is a link, not a regular
    file, another user's, or writable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KernelUnavailable(
                f"{path} is a symbolic link; the kernel cache loads only files it wrote (delete it)"
            ) from exc
        raise KernelUnavailable(f"cannot open {path} ({exc})") from exc
    info = os.fstat(fd)
    problem = "is not a regular file" if not stat.S_ISREG(info.st_mode) else _not_private(info)
    if problem is not None:
        os.close(fd)
        raise KernelUnavailable(f"{path} {problem}; refusing to load it (delete it)")
    return fd


def _read_fd(fd: int) -> bytes:
    with open(fd, "rb", closefd=False) as handle:
        return handle.read()


def _read_private(path: Path) -> bytes | None:
    """The bytes of a file of this user's (``_open_private``), or None where there is none."""
    fd = _open_private(path)
    if fd is None:
        return None
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (mode 0600) atomically: readers see the old file or the whole new one."""
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with open(handle, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


@dataclass(frozen=True)
class Cpu:
    """What /proc/cpuinfo says of this machine's CPUs: model lines and the feature flags
    every core has (-march=native code is valid only on a CPU with each one)."""

    model: str
    features: frozenset[str]


def read_cpu() -> Cpu | None:
    """This machine's CPU, or None where its features cannot be read."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return None
    features: set[str] | None = None
    model = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("flags", "Features"):
            words = set(value.split())
            features = words if features is None else features & words
        elif key in ("model name", "vendor_id", "CPU implementer", "CPU part"):
            model.add(f"{key}: {value.strip()}")
    if not features:
        return None
    return Cpu(model="\n".join(sorted(model)), features=frozenset(features))


@dataclass(frozen=True)
class Plan:
    """One way to build the kernel: flags, and the CPU features the result needs (None:
    portable, any CPU of this machine type)."""

    flags: tuple[str, ...]
    cpu_features: frozenset[str] | None
    machine: str

    def name(self, source: bytes, compiler_version: str) -> str:
        """The cache name: a hash of everything the library's bytes depend on."""
        parts = [*self.flags, compiler_version, self.machine, *sorted(self.cpu_features or ())]
        digest = hashlib.sha256(source + b"\0" + "\0".join(parts).encode()).hexdigest()
        return f"lsh_cpu-{digest[:20]}"


def build_plans(cpu: Cpu | None) -> list[Plan]:
    """-march=native for this CPU, then portable; portable alone where the CPU's features
    cannot be read (a native build there could be reused on a CPU lacking some)."""
    portable = Plan(PORTABLE_FLAGS, None, platform.machine())
    if cpu is None:
        return [portable]
    return [Plan(FLAGS, cpu.features, f"{platform.machine()}\n{cpu.model}"), portable]


def record_path(library: Path) -> Path:
    """The record written beside a library when it is built: its SHA-256 and the CPU
    features it needs."""
    return library.with_name(library.name + ".json")


def _compiler_version(command: list[str]) -> str:
    try:
        done = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        source = " (from $CC, split as a shell would)" if os.environ.get("CC") else ""
        raise KernelUnavailable(
            f"the C compiler {shlex.join(command)}{source} cannot run: {exc}"
        ) from exc
    return done.stdout


def too_old(version_text: str) -> str | None:
    """Why a compiler, by its ``--version`` text, cannot build the kernel, or None: GCC
    before 9 lacks ``__builtin_convertvector``."""
    if "Free Software Foundation" not in version_text or "clang" in version_text.lower():
        return None
    match = re.search(r"\(.*?\)\s+(\d+)\.(\d+)", version_text.splitlines()[0])
    if match is None or int(match[1]) >= MIN_GCC:
        return None
    return (
        f"the C compiler is GCC {match[1]}.{match[2]}, which lacks __builtin_convertvector; "
        f"the kernel needs {MIN_COMPILER} (set $CC to one)"
    )


def _verified(library: Path, cpu: Cpu | None) -> int | None:
    """An open descriptor of ``library`` when its bytes match its record and this CPU has
    every feature it was built for; None when it is missing or stale (to be built again).
    Raises KernelUnavailable for a file this user did not write (``_open_private``)."""
    fd = _open_private(library)
    if fd is None:
        return None
    try:
        digest = hashlib.sha256(_read_fd(fd)).hexdigest()
        record = _read_private(record_path(library))
        fresh = record is not None and _matches(record, digest, cpu)
    except BaseException:
        os.close(fd)
        raise
    if not fresh:
        os.close(fd)
        return None
    return fd


def _matches(record: bytes, digest: str, cpu: Cpu | None) -> bool:
    try:
        fields = json.loads(record)
    except ValueError:
        return False
    if not isinstance(fields, dict) or fields.get("sha256") != digest:
        return False
    needs = fields.get("cpu_features")
    if needs is None:
        return True  # portable
    return isinstance(needs, list) and cpu is not None and set(needs) <= cpu.features


def _build(command: list[str], plan: Plan, library: Path) -> int | str:
    """Compile SOURCE into ``library`` and record it; an open descriptor of the bytes built
    (whatever another process renames into place meanwhile), or the compiler's complaint.
    Raises KernelUnavailable when the cache cannot be written or the compiler not run."""
    folder = library.parent
    try:
        handle, partial = tempfile.mkstemp(prefix=f".{library.name}.", dir=folder)
    except OSError as exc:
        raise KernelUnavailable(
            f"cannot write the kernel cache {folder} ({exc}); set $REFORMER_CACHE_DIR"
        ) from exc
    os.close(handle)
    try:
        try:
            done = subprocess.run(
                [*command, *plan.flags, "-o", partial, str(SOURCE), "-lm"],
                capture_output=True,
                text=True,
                timeout=COMPILE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"the compile took more than {COMPILE_TIMEOUT_S} s"
        except OSError as exc:
            raise KernelUnavailable(
                f"cannot run the C compiler {shlex.join(command)}: {exc}"
            ) from exc
        if done.returncode != 0:
            complaint = (done.stderr or done.stdout).strip()[-2000:]
            return complaint or f"exit status {done.returncode} and no message"
        os.chmod(partial, 0o600)  # the linker made it with the umask's mode
        fd = _open_private(Path(partial))
        if fd is None:
            raise KernelUnavailable(f"the compiler wrote no {partial}")
        try:
            data = _read_fd(fd)
            # Several processes may build at once; each renames a complete file into place
            # and then its record (a reader between the two sees a mismatch and builds).
            os.replace(partial, library)
            record = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "flags": list(plan.flags),
                "cpu_features": None if plan.cpu_features is None else sorted(plan.cpu_features),
            }
            _write_private(record_path(library), json.dumps(record).encode())
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise KernelUnavailable(
                    f"cannot write the kernel cache {folder} ({exc}); set $REFORMER_CACHE_DIR"
                ) from exc
            raise
        return fd
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _find_or_build() -> tuple[Path, int]:
    """The library for this source, compiler and CPU, and an open descriptor of its
    checked bytes; built where missing or stale. Raises KernelUnavailable with the reason
    when there is no compiler, the cache is refused, or every build fails."""
    command = find_compiler()
    if command is None:
        raise KernelUnavailable(NO_COMPILER)
    version = _compiler_version(command)
    old = too_old(version)
    if old is not None:
        raise KernelUnavailable(old)
    folder = private_cache_dir()
    source = SOURCE.read_bytes()
    cpu = read_cpu()
    complaints = []
    for plan in build_plans(cpu):
        library = folder / f"{plan.name(source, version)}.so"
        fd = _verified(library, cpu)
        if fd is not None:
            return library, fd
        failed = library.with_suffix(".failed")
        remembered = _read_private(failed)
        if remembered is None:
            built = _build(command, plan, library)
            if isinstance(built, int):
                return library, built
            with contextlib.suppress(OSError):  # unremembered, the next process tries again
                _write_private(failed, built.encode())
            remembered = built.encode()
        complaints.append(f"{' '.join(plan.flags)}: {remembered.decode(errors='replace')}")
    hint = (
        f" (this compiler lacks __builtin_convertvector: the kernel needs {MIN_COMPILER})"
        if any("convertvector" in complaint for complaint in complaints)
        else ""
    )
    raise KernelUnavailable(
        f"compiling {SOURCE.name} with {shlex.join(command)} failed: "
        + " | ".join(complaints)
        + hint
        + f"; remembered in {folder}/lsh_cpu-*.failed (delete those files to try again)"
    )


def library_path() -> Path:
    """The cached, checked shared library for this source, compiler and CPU, built if
    missing or stale. Raises KernelUnavailable with the reason where it cannot be had."""
    library, fd = _find_or_build()
    os.close(fd)
    return library


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


# The most factors of a factorised hash the decoding step takes (MAX_FACTORS in the C).
DECODE_MAX_FACTORS = 8


class DecodeArgs(ctypes.Structure):
    """Mirror of the C ``DecodeArgs`` struct (field for field, in order): the fused
    decoding step's shapes and buffers (reformer.lsh.cpu.decode_step)."""

    _fields_: ClassVar[Any] = [
        (name, ctypes.c_int64)
        for name in (
            "batch",
            "heads",
            "d_head",
            "d_model",
            "rounds",
            "bucket_size",
            "width",
            "n_buckets",
            "capacity",
            "t",
            "n_factors",
        )
    ] + [
        ("factors", ctypes.c_int64 * DECODE_MAX_FACTORS),
        ("scale", ctypes.c_float),
        *(
            (name, ctypes.c_void_p)
            for name in (
                "x",
                "weights",
                "qk_weights_t",
                "rotations",
                "given",
                "first",
                "inputs",
                "inv_norms",
                "table",
                "counts",
                "out",
                "qvu",
                "keys_out",
                "buckets_out",
            )
        ),
    ]


def _load() -> ctypes.CDLL:
    library, fd = _find_or_build()
    # Through the descriptor, the file whose bytes were checked is the one loaded, even if
    # the name is replaced meanwhile.
    via_fd = f"/proc/self/fd/{fd}"
    try:
        lib = ctypes.CDLL(via_fd if os.path.exists(via_fd) else str(library))
    except OSError as exc:
        raise KernelUnavailable(f"loading {library} failed: {exc}") from exc
    finally:
        os.close(fd)
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
    step = lib.lsh_cpu_decode_step
    step.argtypes = [ctypes.POINTER(DecodeArgs), ctypes.POINTER(ctypes.c_int64)]
    step.restype = ctypes.c_int
    project = lib.lsh_cpu_decode_project
    project.argtypes = [ctypes.POINTER(DecodeArgs)]
    project.restype = None
    return lib


@functools.cache
def _outcome() -> ctypes.CDLL | str:
    """The loaded library, or why there is none: asked once per process, so a failure is
    remembered too (no second compile, no second warning)."""
    try:
        return _load()
    except KernelUnavailable as exc:
        return str(exc)
    except Exception as exc:  # any failure means the torch path, never an error in a forward
        return f"building or loading the kernel failed: {type(exc).__name__}: {exc}"


_OUTCOME_LOCK = threading.Lock()  # two threads' first calls build once


def _reset_lock_in_child() -> None:
    # A thread of the parent may have held the lock at the fork; it does not exist here.
    global _OUTCOME_LOCK
    _OUTCOME_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def load_kernel() -> ctypes.CDLL:
    """The loaded kernel library (built on first use; cached per process).
    Raises KernelUnavailable with the reason when it cannot be built or loaded."""
    with _OUTCOME_LOCK:
        outcome = _outcome()
    if isinstance(outcome, str):
        raise KernelUnavailable(outcome)
    return outcome


def cpu_kernel_unavailable() -> str | None:
    """None when the fused CPU kernel can run in this process, else why not (probed once)."""
    with _OUTCOME_LOCK:
        outcome = _outcome()
    return outcome if isinstance(outcome, str) else None

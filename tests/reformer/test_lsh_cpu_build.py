"""The fused CPU kernel's build and cache as a careful loader: nothing loaded that this user
did not build here, every build failure the torch path with one warning, compilers and
CPUs named, and its worker threads safe to interrupt (reformer.lsh.cpu.build, .function).

Tests may run as root (containers), for whom permissions are not enforced, so unsafe
folders and files are made by mode bits and chown, never by relying on a refused write."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from reformer.lsh import dispatch
from reformer.lsh.cpu import build, function

pytestmark = pytest.mark.skipif(
    build.cpu_kernel_unavailable() is not None,
    reason=f"the fused CPU kernel cannot run here: {build.cpu_kernel_unavailable()}",
)

ROOT = Path(__file__).resolve().parents[2]
REAL_CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang") or "cc"

PLANTED_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *mark = fopen(MARK, "w");
    if (mark) { fputs("the planted library ran", mark); fclose(mark); }
}
int lsh_cpu_run(void) { return 0; }
"""


def _auto() -> str:
    return dispatch.resolve_backend("auto", "cpu", torch.float32, 64, 64)


def _planted_library(folder: Path) -> tuple[Path, Path]:
    """A shared object whose constructor writes a mark file, and that mark's path."""
    mark = folder / "planted-ran"
    source = folder / "planted.c"
    source.write_text(PLANTED_C)
    library = folder / "planted.so"
    subprocess.run(
        [REAL_CC, f'-DMARK="{mark}"', "-shared", "-fPIC", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    return library, mark


def _forge_record(library: Path, payload: Path) -> None:
    """What someone who can write the cache folder can do: put their own object under the
    kernel's name with a record that matches it."""
    library.unlink()
    shutil.copyfile(payload, library)
    library.chmod(0o600)
    record = build.record_path(library)
    fields = json.loads(record.read_text())
    fields["sha256"] = hashlib.sha256(payload.read_bytes()).hexdigest()
    record.write_text(json.dumps(fields))


def _kernel_in_cache(fresh_build) -> Path:
    library = build.library_path()
    build._outcome.cache_clear()
    return library


def _fake_compiler(folder: Path, script: str) -> Path:
    """An executable shell script standing in for a compiler; it logs each compile (not
    ``--version``) to ``folder/compiles``."""
    path = folder / "fake-cc"
    log = folder / "compiles"
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != "--version" ]; then echo "$*" >> {shlex.quote(str(log))}; fi\n' + script
    )
    path.chmod(0o755)
    return path


def _compiles(folder: Path) -> list[str]:
    log = folder / "compiles"
    return log.read_text().splitlines() if log.exists() else []


# -- 1. nothing loaded that this user did not build ------------------------------------------


def test_a_planted_library_in_a_group_writable_cache_is_not_loaded(fresh_build, tmp_path):
    library = _kernel_in_cache(fresh_build)
    payload, mark = _planted_library(tmp_path)
    _forge_record(library, payload)
    fresh_build.chmod(0o775)
    with pytest.warns(RuntimeWarning, match=r"kernels is writable by group \(mode 775\)"):
        assert _auto() == "torch"
    assert not mark.exists(), "the planted library was loaded"
    with pytest.raises(ValueError, match="backend='cpu' cannot run.*writable by group"):
        dispatch.resolve_backend("cpu", "cpu", torch.float32, 64, 64)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_cache_folder_another_user_owns_is_refused(fresh_build, tmp_path):
    library = _kernel_in_cache(fresh_build)
    payload, mark = _planted_library(tmp_path)
    _forge_record(library, payload)
    os.chown(fresh_build, 4321, 4321)
    with pytest.warns(RuntimeWarning, match="is owned by uid 4321, not by this user"):
        assert _auto() == "torch"
    assert not mark.exists()


def test_the_cache_folder_and_its_files_are_made_private(monkeypatch, fresh_build):
    folder = fresh_build / "made-by-the-build"
    monkeypatch.setenv("REFORMER_CACHE_DIR", str(folder))
    previous = os.umask(0o002)  # a umask that leaves new folders group-writable
    try:
        library = build.library_path()
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o777 == 0o700
    assert library.stat().st_mode & 0o777 == 0o600
    assert build.record_path(library).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("how", ["symlink", "group-writable", "another user's"])
def test_a_library_file_that_is_not_this_users_own_is_refused(fresh_build, tmp_path, how):
    library = _kernel_in_cache(fresh_build)
    payload, mark = _planted_library(tmp_path)
    _forge_record(library, payload)
    if how == "symlink":
        library.unlink()
        library.symlink_to(payload)
        reason = "is a symbolic link"
    elif how == "group-writable":
        library.chmod(0o664)
        reason = r"is writable by group \(mode 664\)"
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        os.chown(library, 4321, 4321)
        reason = "is owned by uid 4321"
    with pytest.warns(RuntimeWarning, match=reason):
        assert _auto() == "torch"
    assert not mark.exists()


def test_a_library_that_does_not_match_its_record_is_built_again(fresh_build, tmp_path):
    """A private folder, but a library whose bytes are not those recorded when it was
    built (here another object, its record left alone): built again, never loaded."""
    library = _kernel_in_cache(fresh_build)
    payload, mark = _planted_library(tmp_path)
    library.unlink()
    shutil.copyfile(payload, library)
    library.chmod(0o600)
    assert _auto() == "cpu"
    assert not mark.exists(), "a library that does not match its record was loaded"
    recorded = json.loads(build.record_path(library).read_text())["sha256"]
    assert hashlib.sha256(library.read_bytes()).hexdigest() == recorded


_TRUNCATED_RUN = """
import torch
from reformer import lsh_attention
from reformer.lsh.dispatch import resolve_backend
qk, v = torch.randn(1, 1, 32, 8), torch.randn(1, 1, 32, 8)
lsh_attention(qk, v, n_hashes=2, bucket_size=8, seed=0, backend="auto")
print(resolve_backend("auto", "cpu", torch.float32, 8, 8))
"""


def test_a_truncated_library_is_built_again_not_a_crash(fresh_build):
    """Fault injection 22: a library cut short (a full disk, a killed copy) once killed
    every process that loaded it with SIGBUS. Its bytes no longer match the record."""
    library = _kernel_in_cache(fresh_build)
    size = library.stat().st_size
    with open(library, "r+b") as handle:
        handle.truncate(size // 2)
    done = subprocess.run(
        [sys.executable, "-c", _TRUNCATED_RUN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "REFORMER_CACHE_DIR": str(fresh_build)},
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["cpu"]
    assert library.stat().st_size == size


# -- 2. every build failure is the torch path, said once, tried once --------------------------


def _failing(monkeypatch, fresh_build, failure: str) -> list[list[str]]:
    """Inject one failure; returns the list of compiles attempted (filled as they happen)."""
    compiles: list[list[str]] = []
    real_run = subprocess.run

    def run(argv, *args, **kwargs):
        if argv[-1] == "--version":
            return real_run(argv, *args, **kwargs)
        compiles.append(argv)
        if failure == "compile timeout":
            raise subprocess.TimeoutExpired(argv, build.COMPILE_TIMEOUT_S)
        if failure == "compiler OSError":
            raise OSError(7, "Argument list too long")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", run)
    if failure == "os.replace OSError":

        def replace(src, dst):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(build.os, "replace", replace)
    if failure == "no home folder":
        for name in ("REFORMER_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
            monkeypatch.delenv(name, raising=False)

        def home():
            raise RuntimeError("Could not determine home directory.")

        monkeypatch.setattr(build.Path, "home", home)
    return compiles


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("compile timeout", "the compile took more than 300 s"),
        ("compiler OSError", "cannot run the C compiler"),
        ("os.replace OSError", "cannot write the kernel cache.*No space left"),
        ("no home folder", "no home folder.*REFORMER_CACHE_DIR"),
    ],
)
def test_any_build_failure_is_the_torch_path_with_one_warning_and_one_try(
    monkeypatch, fresh_build, recwarn, failure, reason
):
    compiles = _failing(monkeypatch, fresh_build, failure)
    assert _auto() == "torch"
    tries = len(compiles)
    assert _auto() == "torch"
    with pytest.raises(build.KernelUnavailable, match=reason):
        build.load_kernel()
    assert len(compiles) == tries, "the build was tried again in the same process"
    warned = [w for w in recwarn if "fused CPU kernel cannot run" in str(w.message)]
    assert len(warned) == 1 and re.search(reason, str(warned[0].message))
    with pytest.raises(ValueError, match=f"backend='cpu' cannot run.*{reason}"):
        dispatch.resolve_backend("cpu", "cpu", torch.float32, 64, 64)


# -- 3. compilers ------------------------------------------------------------------------------


def test_cc_is_split_into_words_as_a_shell_would(monkeypatch, fresh_build, tmp_path):
    """CC="ccache gcc": a launcher and its compiler (here a stand-in for ccache, in a
    folder whose name has a space, quoted as a shell would need)."""
    launcher_dir = tmp_path / "my tools"
    launcher_dir.mkdir()
    launcher = launcher_dir / "ccache"
    launcher.write_text('#!/bin/sh\nexec "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("CC", f"{shlex.quote(str(launcher))} {REAL_CC}")
    assert build.cpu_kernel_unavailable() is None
    assert _auto() == "cpu"


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (
            "cc (GCC) 8.5.0 20210514 (Red Hat 8.5.0-4)\n"
            "Copyright (C) 2018 Free Software Foundation, Inc.",
            r"GCC 8\.5, which lacks __builtin_convertvector; the kernel needs GCC 9 or later",
        ),
        (
            "tcc version 0.9.27 (x86_64 Linux)",
            r"lacks __builtin_convertvector: the kernel needs GCC 9 or later",
        ),
    ],
)
def test_a_compiler_without_convertvector_is_named(
    monkeypatch, fresh_build, tmp_path, version, reason
):
    fake = _fake_compiler(
        tmp_path,
        f'if [ "$1" = "--version" ]; then printf "%s\\n" {shlex.quote(version)}; exit 0; fi\n'
        'echo "lsh_cpu.c:231: error: implicit declaration of function '
        "'__builtin_convertvector'\" >&2\nexit 1\n",
    )
    monkeypatch.setenv("CC", str(fake))
    with pytest.warns(RuntimeWarning, match=reason):
        assert _auto() == "torch"
    if version.startswith("cc (GCC) 8"):
        assert _compiles(tmp_path) == [], "a compiler known too old was run on the source"


def test_a_compiler_that_rejects_march_native_is_not_asked_again(
    monkeypatch, fresh_build, tmp_path
):
    """The portable build is used; a later process (here: the probe forgotten) neither
    compiles again nor retries -march=native."""
    fake = _fake_compiler(
        tmp_path,
        'case "$*" in *-march=native*) echo "error: unknown -march=native" >&2; exit 1;; esac\n'
        f'exec {shlex.quote(REAL_CC)} "$@"\n',
    )
    monkeypatch.setenv("CC", str(fake))
    assert _auto() == "cpu"
    first = _compiles(tmp_path)
    assert len(first) == 2 and "-march=native" in first[0] and "-march" not in first[1]
    build._outcome.cache_clear()
    assert _auto() == "cpu"
    assert _compiles(tmp_path) == first


def test_a_failed_build_is_remembered_for_later_processes(monkeypatch, fresh_build, tmp_path):
    """A child process (a sweep's point, a DataLoader worker) neither compiles again nor
    repeats the warning its parent gave."""
    fake = _fake_compiler(tmp_path, 'echo "error: this compiler is broken" >&2\nexit 1\n')
    monkeypatch.setenv("CC", str(fake))
    with pytest.warns(RuntimeWarning, match="this compiler is broken"):
        assert _auto() == "torch"
    assert len(_compiles(tmp_path)) == 2
    child = subprocess.run(
        [
            sys.executable,
            "-W",
            "always",
            "-c",
            "import torch\nfrom reformer.lsh.dispatch import resolve_backend\n"
            "print(resolve_backend('auto', 'cpu', torch.float32, 64, 64))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["torch"]
    assert "fused CPU kernel" not in child.stderr
    assert len(_compiles(tmp_path)) == 2, "the child compiled again"


# -- 4. CPU features -----------------------------------------------------------------------


def _compile_flags(monkeypatch) -> list[list[str]]:
    seen: list[list[str]] = []
    real_run = subprocess.run

    def run(argv, *args, **kwargs):
        if argv[-1] != "--version":
            seen.append(argv)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", run)
    return seen


def test_without_cpuinfo_the_build_is_portable(monkeypatch, fresh_build, tmp_path):
    """Where the CPU's features cannot be read (macOS, some sandboxes), a -march=native
    library could be found again on a CPU that lacks some of them (SIGILL): build portable."""
    monkeypatch.setattr(build, "CPUINFO", tmp_path / "no-cpuinfo")
    compiles = _compile_flags(monkeypatch)
    library = build.library_path()
    assert compiles and not any("-march=native" in argv for argv in compiles)
    assert json.loads(build.record_path(library).read_text())["cpu_features"] is None
    assert _auto() == "cpu"


def test_a_library_built_for_features_this_cpu_lacks_is_not_loaded(monkeypatch, fresh_build):
    library = _kernel_in_cache(fresh_build)
    record = build.record_path(library)
    fields = json.loads(record.read_text())
    assert fields["cpu_features"] and set(fields["cpu_features"]) <= build.read_cpu().features
    fields["cpu_features"].append("a_feature_this_cpu_lacks")
    record.write_text(json.dumps(fields))
    compiles = _compile_flags(monkeypatch)
    assert _auto() == "cpu"
    assert len(compiles) == 1, "the library for another CPU was not built again"
    assert "a_feature_this_cpu_lacks" not in record.read_text()


def test_the_cache_name_depends_on_the_cpu_features():
    cpu = build.read_cpu()
    assert cpu is not None
    fewer = build.Cpu(model=cpu.model, features=cpu.features - {sorted(cpu.features)[0]})
    source = build.SOURCE.read_bytes()
    native, fewer_native = build.build_plans(cpu)[0], build.build_plans(fewer)[0]
    assert native.name(source, "v") != fewer_native.name(source, "v")
    assert build.build_plans(None) == build.build_plans(cpu)[1:]  # portable alone


# -- 5. threads ------------------------------------------------------------------------------


class _FakeKernel:
    """Stands in for the loaded library: each worker thread's share sleeps, then records
    that it returned; the caller's share raises ``caller_raises`` if set."""

    def __init__(self, worker_sleep_s: float = 0.0, caller_raises: bool = False):
        self.worker_sleep_s = worker_sleep_s
        self.caller_raises = caller_raises
        self.returned: list[str] = []
        self.lock = threading.Lock()

    def lsh_cpu_run(self, *call) -> int:
        if threading.current_thread().name.startswith("lsh-cpu"):
            time.sleep(self.worker_sleep_s)
            with self.lock:
                self.returned.append(threading.current_thread().name)
        elif self.caller_raises:
            raise KeyboardInterrupt
        return 0


@pytest.mark.parametrize("where", ["the caller's share", "the wait for a worker"])
def test_an_interrupt_waits_for_every_worker(monkeypatch, where):
    """The workers write into tensors that the interrupted frames free: none may still be
    running when the KeyboardInterrupt leaves the launch."""
    kernel = _FakeKernel(worker_sleep_s=0.5, caller_raises=where == "the caller's share")
    monkeypatch.setattr(function, "load_kernel", lambda: kernel)
    monkeypatch.setattr(function, "_threads", lambda: 4)
    if where == "the wait for a worker":
        real_result = concurrent.futures.Future.result
        interrupted = []

        def result(self, timeout=None):
            if not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt
            return real_result(self, timeout)

        monkeypatch.setattr(concurrent.futures.Future, "result", result)
    with pytest.raises(KeyboardInterrupt):
        function._launch(build.Args(), False, 0, 0, 1, 4)
    assert len(kernel.returned) == 3, f"{3 - len(kernel.returned)} worker(s) still running"


def test_changing_the_thread_count_while_another_thread_launches(monkeypatch):
    """set_num_threads in one thread while another launches remade the pool under the
    other's feet: "cannot schedule new futures after shutdown"."""
    kernel = _FakeKernel()
    monkeypatch.setattr(function, "load_kernel", lambda: kernel)
    sizes = {"two": 2, "three": 3}
    monkeypatch.setattr(function, "_threads", lambda: sizes[threading.current_thread().name])
    errors: list[BaseException] = []

    def launches():
        try:
            for _ in range(300):
                function._launch(build.Args(), False, 0, 0, 1, 4)
        except BaseException as exc:
            errors.append(exc)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=launches, name=name) for name in sizes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors[0]

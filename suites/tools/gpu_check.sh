#!/usr/bin/env bash
# One call on a fresh GPU machine: check the prerequisites, install, warm the Triton cache
# with every kernel binary the run will launch, GPU tests, a kernel microbenchmark, the
# peers, time, memory and scale suites on their CUDA grids, and the report; everything
# under OUT_DIR. Sized to finish in 10 minutes on one H100/H200-class GPU.
#
#   bash suites/tools/gpu_check.sh OUT_DIR            # on the GPU machine
#   bash suites/tools/gpu_check.sh --dry-run OUT_DIR  # any machine: CPU, --quick grids, no installs
#                                               # (or GPU_CHECK_DRY_RUN=1)
#
# OUT_DIR/results/   result rows (*.jsonl), as `python -m suites.run ... --out` writes them
# OUT_DIR/report/    python -m reports.build --results OUT_DIR/results --out OUT_DIR/report
# OUT_DIR/logs/      one log per stage, the environment, JUnit XML of the tests
# OUT_DIR/kernel_bench.json (rewritten after every measurement), OUT_DIR/summary.txt
# OUT_DIR/venv/      the environment it installed into (system site packages visible, so the
#                    machine's own torch is the one used; torch is never installed)
# OUT_DIR/triton-cache/  the compiled kernels, shared by every stage
#
# Each stage runs under `timeout` with its own budget (GPU_CHECK_<STAGE>_S overrides it) and
# never past the whole run's budget (GPU_CHECK_BUDGET_S, default 600 s); a stage that fails
# or runs out of time is logged, keeps what it wrote, and the next one starts; the summary
# is written even when the run itself is interrupted. GPU_CHECK_SUITES picks the suites
# (default "peers time memory scale"); GPU_CHECK_STAGES runs only the named stages (e.g.
# "prereqs warm"); GPU_CHECK_PEERS=0 installs no peers. Exit status: 0 if every stage
# passed, else 1.
#
# The warm stage compiles, in parallel on every CPU, exactly the binaries the later stages
# launch (python -m suites.tools.triton_aot --stages: Triton's own specialisation of the real
# launches, so the cache keys match) and prints their registers, spills and shared memory
# as the driver reports them. In a dry run it times a few of those compiles on this CPU
# and prints each stage's compile count and an estimate from those times.
set -u

usage() { echo "usage: bash suites/tools/gpu_check.sh [--dry-run] OUT_DIR" >&2; exit 2; }
DRY_RUN=${GPU_CHECK_DRY_RUN:-0}
OUT_DIR=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage ;;
    -*) echo "unknown option: $arg" >&2; usage ;;
    *) [ -z "$OUT_DIR" ] || usage; OUT_DIR=$arg ;;
  esac
done
[ -n "$OUT_DIR" ] || usage

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/results" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOGS=$OUT_DIR/logs
cd "$REPO" || exit 2
export TRITON_CACHE_DIR=$OUT_DIR/triton-cache  # kernels compile once, shared by the stages
export MPLCONFIGDIR=$OUT_DIR/matplotlib         # font cache built by the warm stage
unset TRITON_INTERPRET                         # the GPU tests run the compiled kernels
PYTHON=${PYTHON:-python3}
START=$(date +%s)
TOTAL_BUDGET=${GPU_CHECK_BUDGET_S:-600}
SUITES=${GPU_CHECK_SUITES:-peers time memory scale}
ONLY=${GPU_CHECK_STAGES:-}
JOBS=$(nproc 2>/dev/null || echo 2)
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu; SIZE=--quick
else
  DEVICE=cuda; SIZE=
fi
SUMMARY=()
FAILED=0

budget() {  # budget NAME DEFAULT: seconds for a stage, capped by what the run has left
  local name=$1 default=$2 var left
  var="GPU_CHECK_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')_S"
  left=$(( TOTAL_BUDGET - ($(date +%s) - START) - 5 ))
  local want=${!var:-$default}
  (( want < left )) && echo "$want" || echo "$left"
}

stage() {  # stage NAME DEFAULT_SECONDS COMMAND...: run, log, time, record; never exits
  local name=$1 default=$2; shift 2
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then
    return
  fi
  local seconds; seconds=$(budget "$name" "$default")
  if (( seconds < 10 )); then
    SUMMARY+=("$(printf '%-14s %-22s %5s s' "$name" "skipped (no time left)" 0)")
    FAILED=1
    return
  fi
  local log=$LOGS/$name.log began rc status
  began=$(date +%s)
  echo "== $name (budget ${seconds}s; log: $log)"
  # SIGINT first: the sweep records the point it was measuring and exits cleanly, pytest
  # writes its JUnit XML; timeout signals the whole process group, so point children stop
  # too; SIGKILL 5 s later. Whatever a stage wrote before that stays in OUT_DIR.
  timeout -s INT -k 5 "$seconds" bash -c '"$@"' "$name" "$@" >"$log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="timeout after ${seconds}s"; FAILED=1 ;;
    *) status="FAILED (exit $rc)"; FAILED=1 ;;
  esac
  tail -n 25 "$log"
  SUMMARY+=("$(printf '%-14s %-22s %5d s' "$name" "$status" $(( $(date +%s) - began )))")
}

python_include_ok() {  # Python.h where Triton's launcher build looks for it
  "$PYTHON" - <<'EOF'
import os, sys, sysconfig
scheme = sysconfig.get_default_scheme()
scheme = "posix_prefix" if scheme == "posix_local" else scheme
include = sysconfig.get_paths(scheme=scheme)["include"]
print(include)
sys.exit(0 if os.path.exists(os.path.join(include, "Python.h")) else 1)
EOF
}

triton_pin() {  # the triton the machine's torch was built with, else the repository's pin
  "$PYTHON" - <<'EOF'
import importlib.metadata as metadata, re
try:
    requires = metadata.requires("torch") or []
except metadata.PackageNotFoundError:
    requires = []
pins = [m.group(1) for r in requires if (m := re.match(r"(?:pytorch-)?triton\s*==\s*([\w.+]+)", r))]
print(pins[0] if pins else "3.9.0")
EOF
}

prereqs() {
  # What the later stages need, each said plainly when missing. Fatal ones (no torch, no
  # compiler or headers for Triton's launchers, no CUDA on a real run) fail this stage;
  # the run goes on and the later stages fail with their own logs.
  local missing=0 cc include pin installed
  cc=${CC:-$(command -v gcc || command -v clang)}
  if [ -n "$cc" ]; then echo "ok       C compiler: $cc"
  else echo "MISSING  C compiler (gcc or clang, or CC=): Triton builds its kernel launchers with it"; missing=1; fi
  if include=$(python_include_ok); then echo "ok       Python.h in $include"
  else echo "MISSING  Python.h in $include: install the python3-dev headers (Triton's launchers need them)"; missing=1; fi
  if "$PYTHON" -c "import venv, ensurepip" 2>/dev/null; then echo "ok       python venv with pip"
  else echo "MISSING  python3-venv (ensurepip): install falls back to a venv without pip, filled by this python's pip"; fi
  if "$PYTHON" -c "import torch; print('ok       torch', torch.__version__, 'cuda', torch.version.cuda)"; then :
  else echo "MISSING  torch in $PYTHON: install the machine's torch first"; missing=1; fi
  pin=$(triton_pin)
  installed=$("$PYTHON" -c "import triton; print(triton.__version__)" 2>/dev/null || echo none)
  echo "info     triton installed: $installed; the one torch was built with: $pin"
  if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: driver, persistence mode and CUDA not checked"
    nvidia-smi -L 2>/dev/null || true
  else
    if nvidia-smi --query-gpu=name,driver_version,compute_cap,persistence_mode --format=csv; then
      nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ' >"$LOGS/capability"
      if nvidia-smi --query-gpu=persistence_mode --format=csv,noheader | grep -qi disabled; then
        echo "warning  persistence mode is off: every process pays the driver's start-up (nvidia-smi -pm 1)"
      fi
    else
      echo "MISSING  nvidia-smi / the NVIDIA driver"; missing=1
    fi
    if "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then echo "ok       CUDA visible to torch"
    else echo "MISSING  CUDA in torch (a CPU build, or no driver)"; missing=1; fi
  fi
  return $missing
}

install() {
  local torch_pin pin
  torch_pin=$("$PYTHON" -c "import torch; print('torch==' + torch.__version__)") \
    || { echo "no torch in $PYTHON: install the machine's torch first"; return 1; }
  pin=$(triton_pin)
  if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: nothing installed; would create $OUT_DIR/venv (--system-site-packages),"
    echo "pin $torch_pin and triton==$pin (the one torch was built with; installed only if"
    echo "it differs), then install the peers with every installed package pinned"
    return 0
  fi
  local py=$OUT_DIR/venv/bin/python constraints=$OUT_DIR/logs/constraints.txt pip
  local frozen=$OUT_DIR/logs/constraints-peers.txt
  # torch as it is and triton as torch needs it: pip fails rather than replace either.
  printf '%s\ntriton==%s\n' "$torch_pin" "$pin" >"$constraints"
  cat "$constraints"
  # A venv sees its base interpreter's packages, not those of a venv it was made from: use
  # it only if it sees this very torch. Without ensurepip (no python3-venv), make it
  # without pip and install into it with this python's pip (pip --python).
  if "$PYTHON" -m venv --system-site-packages "$OUT_DIR/venv" 2>/dev/null; then
    pip=("$py" -m pip)
  elif "$PYTHON" -m venv --without-pip --system-site-packages "$OUT_DIR/venv" \
      && "$PYTHON" -m pip --python "$py" --version >/dev/null 2>&1; then
    echo "no ensurepip: a venv without pip, filled by $PYTHON's pip"
    pip=("$PYTHON" -m pip --python "$py")
  else
    echo "no venv could be made here (python3-venv, or a pip >= 22.3 for --python)"
    pip=()
  fi
  if [ ${#pip[@]} = 0 ] \
      || [ "$("$py" -c "import torch; print('torch==' + torch.__version__)" 2>/dev/null)" != "$torch_pin" ]; then
    rm -rf "$OUT_DIR/venv"
    py=$PYTHON
    pip=("$PYTHON" -m pip)
    if "$PYTHON" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)"; then
      # torch lives in a virtual environment (a venv made from it would not see it):
      # install beside it there, torch pinned; no PEP 668 marker applies to a venv.
      echo "no venv that sees $torch_pin: $PYTHON is itself a virtual environment, installing into it"
    else
      # The system's python: PEP 668 may refuse (pip says so in this log); allowing it is
      # the machine owner's call (PIP_BREAK_SYSTEM_PACKAGES=1).
      echo "no venv that sees $torch_pin: installing into $PYTHON itself, torch pinned"
    fi
  fi
  local listing=("${pip[@]}" list --format=freeze)
  pip+=(install -q --disable-pip-version-check --retries 2 --timeout 15)
  "${pip[@]}" -c "$constraints" pandas seaborn psutil nvidia-ml-py tabulate tqdm pytest || return 1
  if [ "$("$py" -c "import triton; print(triton.__version__)" 2>/dev/null)" != "$pin" ]; then
    "${pip[@]}" --no-deps "triton==$pin" || return 1
  fi
  # Peers are optional (GPU_CHECK_PEERS=0 leaves them out): a missing one is a skipped
  # row, not a failed check. Everything the run uses is pinned as it now is, so a peer
  # cannot upgrade a package the harness shares with it (numpy, say): pip refuses instead.
  if [ "${GPU_CHECK_PEERS:-1}" = 1 ]; then
    "${listing[@]}" 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' >"$frozen"
    "${pip[@]}" -c "$frozen" reformer-pytorch transformers \
      || echo "peers not installed (they would have replaced a package, or none was found): their points will be skipped"
  fi
  "$py" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
}

environment() {
  date -u
  uname -a
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$PYTHON" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
  "$PYTHON" -m pip freeze 2>/dev/null
  git -C "$REPO" rev-parse HEAD 2>/dev/null
  git -C "$REPO" status --short 2>/dev/null | head -20
  uptime
}

warm() {
  # Everything the later stages launch, compiled once, in parallel, before anything is
  # timed; matplotlib's font cache is built beside it.
  "$PYTHON" -c "import matplotlib.font_manager" &
  local fonts=$! rc
  if [ "$DRY_RUN" = 1 ]; then
    "$PYTHON" -m suites.tools.triton_aot --plan "${GPU_CHECK_PLAN_SAMPLE:-3}" --capability 90 \
      --jobs 2 --target-jobs 16
  else
    "$PYTHON" -m suites.tools.triton_aot --stages --capability "$(cat "$LOGS/capability" 2>/dev/null || echo 90)" \
      --jobs "$JOBS" --load
  fi
  rc=$?
  wait "$fonts"
  touch "$LOGS/warm.done"  # kernels compiled after this were missed by the warm stage
  return $rc
}

gpu_tests() {
  # Every test whose name says cuda or gpu: the CUDA-parametrised LSH tests, a few Triton
  # kernel cases compiled for this GPU (not the interpreter's grid), the Triton probe, and
  # the harness's CUDA paths; not the ahead-of-time compile tests, which CPU CI runs. On a
  # CPU (dry run) they skip.
  "$PYTHON" -m pytest -q -p no:cacheprovider -rs --durations=5 --junitxml "$LOGS/gpu_tests.xml" \
    tests/reformer tests/suites/harness/test_cuda.py -k "(cuda or gpu) and not aot"
}

kernel_bench() {
  if [ "$DRY_RUN" = 1 ]; then
    "$PYTHON" -m suites.tools.kernel_bench --device cpu --dtype float32 --lengths 256 \
      --min-run-time 0.05 --out "$OUT_DIR/kernel_bench.json"
  else
    "$PYTHON" -m suites.tools.kernel_bench --device cuda --lengths 4096,8192,16384 \
      --min-run-time 0.5 --out "$OUT_DIR/kernel_bench.json"
  fi
}

suite() {
  # shellcheck disable=SC2086  # SIZE is empty or one flag
  "$PYTHON" -m suites.run "$1" --device "$DEVICE" $SIZE --out "$OUT_DIR/results" --no-progress
}

summary() {  # on every exit, so an interrupted run still says what it did
  {
    echo "gpu_check summary ($(date -u '+%Y-%m-%d %H:%M:%S') UTC, device $DEVICE, dry_run $DRY_RUN)"
    printf '%s\n' "${SUMMARY[@]}"
    echo "total $(( $(date +%s) - START )) s of ${TOTAL_BUDGET} s"
    if [ -f "$LOGS/warm.log" ]; then
      echo "kernel binaries (python -m suites.tools.triton_aot; registers, spills, shared memory):"
      grep -E '^(compile time|\(|sm_[0-9]+:|\| )|compiles in|^Estimates' "$LOGS/warm.log"
    fi
    if [ -f "$LOGS/warm.done" ]; then
      # Each compiled kernel leaves <name>.json in its cache entry: any LSH kernel newer
      # than the warm stage was a launch whose specialisation the warm stage did not build.
      echo "LSH kernels compiled after the warm stage (0 expected): $(find "$TRITON_CACHE_DIR" \
        -name 'lsh_*.json' -newer "$LOGS/warm.done" 2>/dev/null | wc -l)"
    fi
    echo "kernel microbenchmark (ms; ratios > 1 mean the Triton kernels are faster):"
    sed -n '/^| L /,$p' "$LOGS/kernel-bench.log" 2>/dev/null
    echo "rows: $(cat "$OUT_DIR"/results/*.jsonl 2>/dev/null | wc -l) in $OUT_DIR/results; report: $OUT_DIR/report"
  } | tee "$OUT_DIR/summary.txt"
}

# Stages run in `bash -c` under timeout, so they see these as exported.
export OUT_DIR LOGS REPO PYTHON DRY_RUN DEVICE SIZE JOBS
export -f python_include_ok triton_pin prereqs install warm gpu_tests kernel_bench suite

echo "gpu_check: out=$OUT_DIR dry_run=$DRY_RUN device=$DEVICE budget=${TOTAL_BUDGET}s"
trap summary EXIT
trap 'exit 130' INT TERM
environment >"$LOGS/environment.txt" 2>&1
stage prereqs 15 prereqs
stage install 110 install
if [ "$DRY_RUN" != 1 ] && [ -x "$OUT_DIR/venv/bin/python" ]; then
  export PYTHON=$OUT_DIR/venv/bin/python  # else the machine's python, as it is
fi
stage warm 90 warm
stage gpu-tests 95 gpu_tests
stage kernel-bench 60 kernel_bench
for name in $SUITES; do
  case $name in
    peers) seconds=25 ;; time) seconds=55 ;; memory) seconds=45 ;; scale) seconds=45 ;;
    *) seconds=60 ;;
  esac
  stage "$name" "$seconds" suite "$name"
done
stage report 25 "$PYTHON" -m reports.build --results "$OUT_DIR/results" --out "$OUT_DIR/report"
exit "$FAILED"

#!/usr/bin/env bash
# One call on a fresh GPU machine: install, GPU tests, a kernel microbenchmark, the peers,
# time, memory and scale suites on their CUDA grids, and the report; everything under
# OUT_DIR. Sized to finish in under 8 minutes on one H100/H200-class GPU.
#
#   bash suites/gpu_check.sh OUT_DIR            # on the GPU machine
#   bash suites/gpu_check.sh --dry-run OUT_DIR  # any machine: CPU, --quick grids, no installs
#                                               # (or GPU_CHECK_DRY_RUN=1)
#
# OUT_DIR/results/   result rows (*.jsonl), as `python -m suites.run ... --out` writes them
# OUT_DIR/report/    python -m reports.build --results OUT_DIR/results --out OUT_DIR/report
# OUT_DIR/logs/      one log per stage, the environment, JUnit XML of the tests
# OUT_DIR/kernel_bench.json, OUT_DIR/summary.txt
# OUT_DIR/venv/      the environment it installed into (system site packages visible, so the
#                    machine's own torch is the one used; torch is never installed). Where
#                    no venv sees that torch, it installs beside it in the machine's python.
#
# Each stage runs under `timeout` with its own budget (GPU_CHECK_<STAGE>_S overrides it) and
# never past the whole run's budget (GPU_CHECK_BUDGET_S, default 465 s: the stages' 425 s
# plus 5 s to kill each that overruns, so the run ends within 8 minutes); a stage that fails
# or runs out of time is logged and the next one starts. GPU_CHECK_SUITES picks the suites
# (default "peers time memory scale"); GPU_CHECK_PEERS=0 installs no peers. Exit status: 0
# if every stage passed, else 1.
set -u

usage() { echo "usage: bash suites/gpu_check.sh [--dry-run] OUT_DIR" >&2; exit 2; }
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

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/results" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOGS=$OUT_DIR/logs
cd "$REPO" || exit 2
export TRITON_CACHE_DIR=$OUT_DIR/triton-cache  # kernels compile once, shared by the stages
unset TRITON_INTERPRET                         # the GPU tests run the compiled kernels
PYTHON=${PYTHON:-python3}
START=$(date +%s)
TOTAL_BUDGET=${GPU_CHECK_BUDGET_S:-465}
SUITES=${GPU_CHECK_SUITES:-peers time memory scale}
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
  local seconds; seconds=$(budget "$name" "$default")
  if (( seconds < 10 )); then
    SUMMARY+=("$(printf '%-14s %-22s %5s s' "$name" "skipped (no time left)" 0)")
    FAILED=1
    return
  fi
  local log=$LOGS/$name.log began rc status
  began=$(date +%s)
  echo "== $name (budget ${seconds}s; log: $log)"
  # SIGINT first: the sweep records the point it was measuring and exits cleanly; timeout
  # signals the whole process group, so point children stop too; SIGKILL 5 s later.
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

install() {
  local torch_pin
  torch_pin=$("$PYTHON" -c "import torch; print('torch==' + torch.__version__)") \
    || { echo "no torch in $PYTHON: install the machine's torch first"; return 1; }
  if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: nothing installed; would create $OUT_DIR/venv (--system-site-packages)"
    "$PYTHON" -c "import importlib.util as u; print('triton installed:', u.find_spec('triton') is not None)"
    return 0
  fi
  local py=$OUT_DIR/venv/bin/python constraints=$OUT_DIR/logs/constraints.txt
  # Pin the torch that is there, so no dependency can replace it (pip fails instead).
  echo "$torch_pin" >"$constraints"
  cat "$constraints"
  # A venv sees its base interpreter's packages, not those of a venv it was made from: use
  # it only if it sees this very torch, else install beside the machine's torch.
  if ! "$PYTHON" -m venv --system-site-packages "$OUT_DIR/venv" \
      || [ "$("$py" -c "import torch; print('torch==' + torch.__version__)" 2>/dev/null)" \
           != "$torch_pin" ]; then
    echo "no venv that sees $torch_pin: installing into $PYTHON itself (torch pinned)"
    rm -rf "$OUT_DIR/venv"
    py=$PYTHON
  fi
  local pip=("$py" -m pip install -q --disable-pip-version-check --retries 2 --timeout 15
             -c "$constraints")
  "${pip[@]}" pandas seaborn psutil nvidia-ml-py tabulate tqdm pytest || return 1
  "$py" -c "import triton" 2>/dev/null || "${pip[@]}" triton || return 1
  # Peers are optional (GPU_CHECK_PEERS=0 leaves them out): a missing one is a skipped
  # row, not a failed check.
  if [ "${GPU_CHECK_PEERS:-1}" = 1 ]; then
    "${pip[@]}" reformer-pytorch transformers \
      || echo "peers not installed: their points will be skipped"
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

gpu_tests() {
  # Every test whose name says cuda or gpu: the CUDA-parametrised LSH tests, the Triton
  # kernels compiled for this GPU (not interpreted), and the harness's CUDA paths; not the
  # ahead-of-time compile tests, which CPU CI runs. On a CPU (dry run) they skip.
  "$PYTHON" -m pytest -q -p no:cacheprovider -rs --junitxml "$LOGS/gpu_tests.xml" \
    tests/reformer tests/suites/test_cuda.py -k "(cuda or gpu) and not aot"
}

kernel_bench() {
  if [ "$DRY_RUN" = 1 ]; then
    "$PYTHON" -m suites.kernel_bench --device cpu --dtype float32 --lengths 256 \
      --min-run-time 0.05 --out "$OUT_DIR/kernel_bench.json"
  else
    "$PYTHON" -m suites.kernel_bench --device cuda --lengths 4096,8192,16384 \
      --min-run-time 0.5 --out "$OUT_DIR/kernel_bench.json"
  fi
}

suite() {
  # shellcheck disable=SC2086  # SIZE is empty or one flag
  "$PYTHON" -m suites.run "$1" --device "$DEVICE" $SIZE --out "$OUT_DIR/results" --no-progress
}

# Stages run in `bash -c` under timeout, so they see these as exported.
export OUT_DIR LOGS REPO PYTHON DRY_RUN DEVICE SIZE
export -f install gpu_tests kernel_bench suite

echo "gpu_check: out=$OUT_DIR dry_run=$DRY_RUN device=$DEVICE budget=${TOTAL_BUDGET}s"
environment >"$LOGS/environment.txt" 2>&1
stage install 60 install
if [ "$DRY_RUN" != 1 ] && [ -x "$OUT_DIR/venv/bin/python" ]; then
  export PYTHON=$OUT_DIR/venv/bin/python  # else the machine's python, as it is
fi
stage gpu-tests 85 gpu_tests
stage kernel-bench 40 kernel_bench
for name in $SUITES; do
  case $name in
    peers) seconds=30 ;; time) seconds=70 ;; memory) seconds=50 ;; scale) seconds=60 ;;
    *) seconds=60 ;;
  esac
  stage "$name" "$seconds" suite "$name"
done
stage report 30 "$PYTHON" -m reports.build --results "$OUT_DIR/results" --out "$OUT_DIR/report"

{
  echo "gpu_check summary ($(date -u '+%Y-%m-%d %H:%M:%S') UTC, device $DEVICE, dry_run $DRY_RUN)"
  printf '%s\n' "${SUMMARY[@]}"
  echo "total $(( $(date +%s) - START )) s of ${TOTAL_BUDGET} s"
  echo "kernel microbenchmark (ms; ratios > 1 mean the Triton kernels are faster):"
  sed -n '/^| L /,$p' "$LOGS/kernel-bench.log" 2>/dev/null
  echo "rows: $(cat "$OUT_DIR"/results/*.jsonl 2>/dev/null | wc -l) in $OUT_DIR/results; report: $OUT_DIR/report"
} | tee "$OUT_DIR/summary.txt"
exit "$FAILED"

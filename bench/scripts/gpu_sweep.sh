#!/usr/bin/env bash
# The GPU sweep in one command, for a machine with an NVIDIA GPU and its own torch (the
# device tool's H200: Python 3.12, torch with CUDA, no internet). It installs mobattn
# into that Python without touching its torch (--no-deps; click, rich and numpy from the
# wheels `make gpu-wheels` put in .gpu-wheels/, carried along, where that Python lacks
# them), checks one configuration of every backend first (a broken
# install costs seconds, not the lease), then runs the presets cuda, cuda-throughput and
# cuda-compiled in-process (no process start per configuration; a CUDA out-of-memory is
# that row's oom) and writes the rows, the GPU's facts and the log under $OUT.
#
#   make gpu-wheels                                   # here, once (needs the package index)
#   OUT=/tmp/gpu bash bench/scripts/gpu_sweep.sh      # there
#   DRY_RUN=1 bash bench/scripts/gpu_sweep.sh         # here: the plan, nothing measured
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-results/gpu}
# The whole sweep; each preset gets what the earlier ones left. Measured on the H200
# (2026-11-30): eager rows about 1.7 s each (cuda's 240 about 7 minutes; FLOPs are now
# counted on the meta device, which should shorten it), a compile in max-autotune mode
# about a minute (now inductor's default mode, not yet timed there).
BUDGET_S=${BUDGET_S:-420}
PRESETS="cuda cuda-compiled cuda-throughput"  # graph and eager first: the deployed form and its ranking
# -I: the checkout's own mobattn/ (sources, not the installed package) stays off sys.path
MOBATTN="$PY -I -u -m mobattn"
mkdir -p "$OUT"

if [ -n "${DRY_RUN:-}" ]; then
  $PY bench/scripts/gpu_harness.py --dry-run
  for preset in $PRESETS; do
    $MOBATTN sweep --preset "$preset" --results "$OUT/$preset.jsonl" --dry-run --json \
      | $PY -c "import json, sys; print('$preset:', len(json.load(sys.stdin)), 'configurations')"
  done
  exit 0
fi

exec > >(tee -a "$OUT/log.txt") 2>&1
start=$(date +%s)
if [ -d .gpu-wheels ]; then
  $PY -m pip install --quiet --no-index --find-links .gpu-wheels click rich numpy || true
fi
$PY -m pip install --quiet --no-deps --no-build-isolation .
$PY -I - >"$OUT/gpu.json" <<'PY'
import json, shutil, subprocess, torch
assert torch.cuda.is_available(), "no CUDA GPU here"
from mobattn.environment import environment
query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
smi = subprocess.run(query, capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else None
print(json.dumps({"environment": environment(), "nvidia_smi": smi,
                  "torch": torch.__version__, "capability": torch.cuda.get_device_capability()}, indent=1))
PY
cat "$OUT/gpu.json"

# one configuration of each backend; every row must be ok before the sweep
smoke=$(mktemp -d)
cat >"$smoke/grid.toml" <<'TOML'
attentions = ["eaa"]
dims = [64]
hws = [[14, 14]]
backends = ["torch", "torch-cudagraph", "torch-compile", "torch-cudagraphs"]
precisions = ["fp16"]
devices = ["cuda"]
profile = "quick"
TOML
$MOBATTN sweep "$smoke/grid.toml" --results "$smoke/rows.jsonl" --no-isolate || true
$PY -I - "$smoke/rows.jsonl" <<'PY' || { echo "smoke rows not all ok: the sweep is not run"; exit 1; }
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for r in rows:
    print("smoke:", r["status"], r["backend"], r.get("attention") or r.get("model"), r.get("median_ms"), (r.get("reason") or "")[:300])
sys.exit(0 if rows and all(r["status"] == "ok" for r in rows) else 1)
PY
echo "install and smoke: $(( $(date +%s) - start )) s"

# the independent harness first (about a minute): what every row is checked against
start=$(date +%s)
timeout --signal=INT 120 $PY -I bench/scripts/gpu_harness.py --out "$OUT/harness.jsonl" >/dev/null \
  || echo "harness: exit $? (records so far are kept in $OUT/harness.jsonl)"
echo "harness: done in $(( $(date +%s) - start )) s"

start=$(date +%s)
for preset in $PRESETS; do
  left=$(( BUDGET_S - ($(date +%s) - start) ))
  if [ "$left" -le 20 ]; then echo "$preset: no time left, not run"; continue; fi
  # exit 1 (a configuration was oom) is a result, not a failure of the script
  timeout --signal=INT "$left" $MOBATTN sweep --preset "$preset" --results "$OUT/$preset.jsonl" --no-isolate \
    || echo "$preset: exit $? (rows so far are kept in $OUT/$preset.jsonl)"
  echo "$preset: done at $(( $(date +%s) - start )) s"
done

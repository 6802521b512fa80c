#!/usr/bin/env bash
# The GPU sweep in one command, for a machine with an NVIDIA GPU and its own torch (the
# device tool's H200: Python 3.12, torch with CUDA, no internet). It installs mobattn
# into that Python without touching its torch (--no-deps; click, rich and numpy from the
# wheels `make gpu-wheels` put in .gpu-wheels/, carried along), runs the presets cuda,
# cuda-compiled and cuda-throughput in-process (no process start per configuration; a
# CUDA out-of-memory is that row's oom) and writes the rows under $OUT.
#
#   make gpu-wheels                                   # here, once (needs the package index)
#   OUT=/tmp/gpu bash bench/scripts/gpu_sweep.sh      # there
#   DRY_RUN=1 bash bench/scripts/gpu_sweep.sh         # here: the plan, nothing measured
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-results/gpu}
BUDGET_S=${BUDGET_S:-480}  # the whole sweep; each preset gets what the earlier ones left
mkdir -p "$OUT"

if [ -z "${DRY_RUN:-}" ]; then
  if [ -d .gpu-wheels ]; then
    $PY -m pip install --quiet --no-index --find-links .gpu-wheels click rich numpy || true
  fi
  $PY -m pip install --quiet --no-deps --no-build-isolation .
  $PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU here'; print(torch.cuda.get_device_name(0), torch.__version__, torch.version.cuda)"
fi

start=$(date +%s)
for preset in cuda cuda-compiled cuda-throughput; do
  left=$(( BUDGET_S - ($(date +%s) - start) ))
  if [ -n "${DRY_RUN:-}" ]; then
    $PY -m mobattn sweep --preset "$preset" --results "$OUT/$preset.jsonl" --dry-run --json \
      | $PY -c "import json, sys; print('$preset:', len(json.load(sys.stdin)), 'configurations')"
    continue
  fi
  if [ "$left" -le 20 ]; then echo "$preset: no time left, not run"; continue; fi
  # exit 1 (a configuration was oom) is a result, not a failure of the script
  timeout --signal=INT "$left" $PY -m mobattn sweep --preset "$preset" --results "$OUT/$preset.jsonl" --no-isolate \
    || echo "$preset: exit $? (rows so far are kept in $OUT/$preset.jsonl)"
done

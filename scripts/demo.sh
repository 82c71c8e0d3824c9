#!/usr/bin/env bash
# `make demo`: the whole pipeline on the built-in synthetic faces, on a CPU, in minutes, as the chain of public
# commands a user would type (README, "Set-up"). One `step` per command: to add a step, append one `step` line.
#
#   PYTHON=.venv/bin/python bash scripts/demo.sh [--skip-sweep]     # --skip-sweep: only the bicubic table
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, whatever is installed
PY=${PYTHON:-python3}

step() {  # step TITLE COMMAND...: print the title, run the command; a failing command ends the demo with its code
  printf '%s\n' "$1"
  shift
  "$@"
}

step "== 1. bicubic baseline on 64 synthetic 256x256 faces (paper convention: Y, crop 8)" \
  "$PY" analysis/bicubic.py --n 64
[[ "${1:-}" == "--skip-sweep" ]] && exit 0
step $'\n== 2. python sweeps/run.py --grid ablation   (Ray Tune -> MLflow, synthetic faces, short CPU schedule)' \
  "$PY" sweeps/run.py --grid ablation --resume
step $'\n== 3. python analysis/tables.py --grid ablation' \
  "$PY" analysis/tables.py --grid ablation
step $'\n== 4. python sweeps/robustness.py --sweep ablation-x8-synthetic --only description:eye-colour   (the iris colour only the description states, read back from the SR faces)' \
  "$PY" sweeps/robustness.py --sweep ablation-x8-synthetic --only description:eye-colour
step $'\n== 5. python analysis/tables.py --grid robustness --sweep ablation-x8-synthetic' \
  "$PY" analysis/tables.py --grid robustness --sweep ablation-x8-synthetic
step $'\n== 6. python analysis/positive_control.py --n 32   (the positive control: LLV-FSR with and without the description, two checkpoints of the controls grid, read back)' \
  "$PY" analysis/positive_control.py --n 32

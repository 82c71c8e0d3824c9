#!/usr/bin/env bash
# The prepared GPU check of issue 17: every GPU number the project needs, in one command of under 8 minutes.
#
#   scripts/gpu_check.sh OUT_DIR [--tiny] [--only STEP,STEP...]
#
# Runs from the repository root on the GPU machine's stock python3 (no ray, mlflow, open_clip, lpips, pyiqa,
# deepface; the package is not installed: PYTHONPATH=.), and writes everything under OUT_DIR, plus OUT_DIR.tgz of it:
#   env.txt           GPU, driver, CPU, python, torch/CUDA/cuDNN and package versions
#   bench_eager.csv   python -m bench, HR 256, batch 16, x8 and x16, every model: fp32 eager | fast eager
#   bench_compile.csv the same with torch.compile on the fast path, models in priority order until its budget ends
#   bench_gpu.csv     both merged (compiled fast rows labelled "fast-compile"): what docs/bench_gpu.csv takes
#   project.log       python -m bench --project table1,ablation --from-csv bench_gpu.csv: GPU-hours per grid
#   pack/             the synthetic LLV-FSR trial as 1, 2, 4, 8 concurrent trainers, nvidia-smi sampled each second
#   paper/            one LLV-FSR x8 training run at the paper's size (HR 256, batch 16) on synthetic faces
#   summary.md        all tables; steps.tsv: each step's exit code, seconds and budget; <step>.log: its output
# Every step has its own time budget (timeout) and a failing step does not stop the others. --tiny is the CPU
# rehearsal of the same steps at toy sizes (tests/test_gpu_check.py). The runs' prior stores must be prepared
# first, where open_clip is installed: `make gpu-check-priors`, then carry priors_cache/gpu-check.
# docs/benchmarks.md, "GPU check", says how to run it through the device tool and read its results.
set -u

usage() { echo "usage: scripts/gpu_check.sh OUT_DIR [--tiny] [--only STEP,...]; steps: $ALL_STEPS" >&2; exit 2; }
ALL_STEPS="env,bench,compile,project,pack,paper"
OUT="" TINY=0 ONLY=$ALL_STEPS
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) TINY=1 ;;
    --only) [ $# -ge 2 ] || usage; ONLY=$2; shift ;;
    -h|--help) usage ;;
    -*) echo "error: unknown option $1" >&2; usage ;;
    *) [ -z "$OUT" ] || { echo "error: one OUT_DIR expected, got $OUT and $1" >&2; usage; }; OUT=$1 ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "error: OUT_DIR is missing" >&2; usage; }
for s in ${ONLY//,/ }; do
  case ",$ALL_STEPS," in *",$s,"*) ;; *) echo "error: --only: unknown step '$s'" >&2; usage ;; esac
done

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
PRIORS=${GPU_CHECK_PRIORS:-priors_cache/gpu-check}
if [[ ",$ONLY," == *,pack,* || ",$ONLY," == *,paper,* ]] && [ ! -d "$PRIORS" ]; then
  echo "error: $PRIORS: no prepared prior stores; run 'make gpu-check-priors' here and carry $PRIORS" >&2
  exit 2
fi
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 1
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

if [ "$TINY" = 1 ]; then  # CPU rehearsal: the same commands at toy sizes
  DEVICE=cpu
  BENCH="--device cpu --hr-size 32 --batch 2 --steps 1 --warmup 1 --scales 8 --models llvfsr,srcnn"
  COMPILE="--device cpu --hr-size 32 --batch 2 --steps 1 --warmup 1 --scales 8 --models llvfsr"
  # Generous limits: a shared CPU machine can take a minute to start a trainer.
  PACK="--levels 1,2 --steady 1 --budget 150 --tiny" PAPER="--levels 1 --steady 1 --budget 150 --tiny"
  B_ENV=120 B_BENCH=300 B_COMPILE=300 B_PROJECT=120 B_PACK=400 B_PAPER=200 B_REPORT=120 TOTAL=0
else  # budgets in seconds, 475 in all (7.9 min); docs/benchmarks.md, "GPU check", estimates each step
  DEVICE=cuda
  BENCH="--device cuda --hr-size 256 --batch 16 --steps 10 --warmup 2 --scales 8,16"
  # Compiling costs tens of seconds per model and path: LLV-FSR x8 (issue 17's 2.5x target) first, then the rest
  # in order of their share of the Table 1 bill, until the budget ends (the CSV keeps the finished rows).
  COMPILE="--device cuda --hr-size 256 --batch 16 --steps 10 --warmup 2 --scales 8
           --models llvfsr,llvfsr-model1,dic,sfmnet,fsrnet,wfen,srcnn,sisn,faceformer"
  PACK="--levels 1,2,4,8 --steady 10 --budget 28" PAPER="--levels 1 --steady 35 --budget 60"
  B_ENV=15 B_BENCH=130 B_COMPILE=100 B_PROJECT=15 B_PACK=130 B_PAPER=70 B_REPORT=15
  TOTAL=450  # the paper-size run also gets what the steps before it left of this (issue 17: a few minutes)
fi
SECONDS=0

printf "step\texit\tseconds\tbudget\n" > "$OUT/steps.tsv"
# step NAME BUDGET COMMAND...: run COMMAND under its budget, output to NAME.log, one line in steps.tsv.
step() {
  local name=$1 budget=$2 start rc
  shift 2
  [[ ",$ONLY," == *",$name,"* || $name == report ]] || return 0
  echo "== $name (budget ${budget}s)"
  start=$(date +%s)
  timeout -k 10 "$budget" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  printf "%s\t%s\t%s\t%s\n" "$name" "$rc" "$(( $(date +%s) - start ))" "$budget" | tee -a "$OUT/steps.tsv"
  [ "$rc" = 0 ] || tail -n 5 "$OUT/$name.log"
}

env_info() {
  date -u
  uname -srm
  echo "cpus: $(getconf _NPROCESSORS_ONLN)"
  free -g 2>/dev/null | head -n 2
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
  else
    echo "nvidia-smi: not found"
  fi
  "$PY" - <<'EOF'
import importlib.metadata as md
import importlib.util
import platform

import torch

from llvfsr.measure import bf16_peak_tflops, device_label

print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"gpu: {p.name}, capability {p.major}.{p.minor}, {p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.1f} GiB; bf16 peak in llvfsr.measure: {bf16_peak_tflops(torch.device('cuda'))}")
else:
    print("gpu: none;", device_label(torch.device("cpu")))
for name in ("numpy", "scipy", "scikit-image", "pillow", "pandas", "tqdm", "transformers", "timm", "torchvision",
             "triton"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} missing")


def absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ImportError:  # an import blocker (the CPU rehearsal)
        return True


print("absent (as on the GPU machine):", {m: absent(m) for m in ("ray", "mlflow", "open_clip", "lpips", "pyiqa",
                                                                  "deepface")})
EOF
}
export -f env_info
export PY

step env "$B_ENV" bash -c env_info
cp "$OUT/env.log" "$OUT/env.txt" 2>/dev/null
# shellcheck disable=SC2086  # the option strings are meant to split
step bench "$B_BENCH" "$PY" -m bench $BENCH --no-compile --csv "$OUT/bench_eager.csv"
# shellcheck disable=SC2086
step compile "$B_COMPILE" "$PY" -m bench $COMPILE --csv "$OUT/bench_compile.csv"
step project "$B_PROJECT" bash -c "\"\$0\" scripts/gpu_check_summary.py merge-bench \"\$1/bench_eager.csv\" \
  \"\$1/bench_compile.csv\" -o \"\$1/bench_gpu.csv\" && \"\$0\" -m bench --project table1,ablation \
  --scales 8,16 --from-csv \"\$1/bench_gpu.csv\"" "$PY" "$OUT"
# shellcheck disable=SC2086
step pack "$B_PACK" "$PY" scripts/gpu_check_train.py --run pack $PACK --device "$DEVICE" --priors-root "$PRIORS" \
  --out "$OUT/pack"
LEFT=$(( TOTAL - SECONDS - B_REPORT ))
if [ "$ONLY" = "$ALL_STEPS" ] && [ "$LEFT" -gt "$B_PAPER" ]; then  # start-up (384 faces at 256 px): about 30 s
  B_PAPER=$LEFT PAPER="--levels 1 --steady $(( LEFT - 40 )) --budget $(( LEFT - 10 ))"
fi
# shellcheck disable=SC2086
step paper "$B_PAPER" "$PY" scripts/gpu_check_train.py --run paper $PAPER --device "$DEVICE" --priors-root "$PRIORS" \
  --out "$OUT/paper"
step report "$B_REPORT" "$PY" scripts/gpu_check_summary.py report "$OUT"

tar -czf "$OUT.tgz" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null
cat "$OUT/summary.md" 2>/dev/null
echo "== done: $OUT (and $OUT.tgz)"
awk -F'\t' 'NR > 1 && $2 != 0 { bad = 1 } END { exit bad }' "$OUT/steps.tsv"

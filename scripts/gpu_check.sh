#!/usr/bin/env bash
# Issue #27's GPU figures in one call on a lent GPU (docs/BENCHMARKS.md, "Stacked seeds"):
#   bash ../shared/tools/gpu-bundle.sh                  # here, once: writes .gpu/
#   source .gpu/setup.sh; bash scripts/gpu_check.sh     # on the GPU machine (carry .gpu)
# 1. the bench, side by side in one process: solo eager, stacked 1 and 10, eager and graphed;
# 2. real trainings of sep_3671 (15 epochs, batch 32, the shipped teacher, elastic):
#    10 seeds stacked in one process, then a lone run, each timed whole;
# 3. a summary: each seed's final-epoch accuracy and the wall times.
# Everything lands in $OUT (the device tool's folder) or ./gpu-check.
set -uo pipefail
out=${OUT:-gpu-check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
run() {  # name, limit in seconds, command...
  local name=$1 limit=$2; shift 2
  local t0 rc; t0=$(date +%s%N)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1; rc=$?
  echo "$name rc=$rc wall_ms=$(( ($(date +%s%N) - t0) / 1000000 ))" | tee -a "$out/times.txt"
}
run bench 120 python3 -m mnist_sweep.bench --stack 1,10 --batches 300 --repeats 3 \
  --json "$out/bench-stack.json" experiment=sep_3671 distill.teacher=teacher_8128 trainer.device=cuda
run stack10 90 python3 -m mnist_sweep experiment=sep_3671 distill.teacher=teacher_8128 trainer.device=cuda \
  'trainer.seeds=[41,42,43,44,45,46,47,48,49,50]' trainer.progress=false "hydra.run.dir=$out/stack10"
run lone 45 python3 -m mnist_sweep experiment=sep_3671 distill.teacher=teacher_8128 trainer.device=cuda \
  'trainer.seeds=[41]' trainer.progress=false "hydra.run.dir=$out/lone"
python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("stack10", "lone"):
    for m in sorted(out.glob(f"{name}/seed_*/metrics.json")):
        r = json.loads(m.read_text())
        print(name, m.parent.name, r["status"], r.get("test_acc"), "wall_s", r.get("wall_seconds"))
PY

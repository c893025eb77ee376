#!/usr/bin/env bash
# The GPU paths, on a machine with a CUDA GPU (CI never has one): a 4-candidate search
# with executor=ray and executor.num_gpus=0.25 (four candidates share the GPU), then a
# bf16-mixed retrain and its evaluation. Prints what ran on the GPU and how long each took.
#
#     bash benchmarks/gpu_check.sh            # with the project's venv (make setup)
#     PYTHON=python bash benchmarks/gpu_check.sh
#
# Everything is written under a temporary folder (or $GPU_CHECK_OUT), nothing in the
# project's results or MLflow store.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t nasflow-gpu-check-XXXX)}
export RAY_AUTH_MODE=disabled  # the Ray this script starts, on this machine only
paths=(
  "paths.prepared=$OUT/prepared" "paths.search=$OUT/search" "paths.retrain=$OUT/retrain"
  "paths.evaluate=$OUT/evaluate" "paths.checkpoints=$OUT/checkpoints"
  "tracking.uri=sqlite:///$OUT/mlflow.db" "tracking.artifact_location=$OUT/mlartifacts"
)
step() { echo; echo "== $1"; }
timed() {
  local start=$SECONDS
  "$@"
  echo "-- took $((SECONDS - start)) s"
}

step "the GPU"
"$PY" - <<'EOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("no CUDA GPU here: torch.cuda.is_available() is False")
print(f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, torch {torch.__version__}, "
      f"bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

step "prepare (digits)"
timed "$PY" pipelines/prepare.py "${paths[@]}"

step "search: 4 candidates as Ray tasks of 0.25 GPU each, all in flight at once"
timed "$PY" pipelines/search.py "${paths[@]}" strategy.budget=4 \
  executor=ray executor.workers=4 executor.num_cpus=1 executor.num_gpus=0.25

step "where the candidates trained: the same estimator through the same executor, each task reporting its device"
OUT="$OUT" timed "$PY" - <<'EOF'
import os, sys, time
sys.path.insert(0, "src")
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from nasflow.config import register_configs
from nasflow.executors import RayExecutor
from nasflow.records import Task
from nasflow.training import InMemoryData

register_configs()
with initialize_config_dir(os.path.abspath("conf"), version_base="1.3"):
    cfg = compose("config")
data = InMemoryData.load(os.path.join(os.environ["OUT"], "prepared"), ("train", "val"))
space = instantiate(cfg.search_space)
estimator = instantiate(cfg.estimator, space=space, data=data, trainer=instantiate(cfg.trainer))
strategy = instantiate(cfg.strategy, space=space, budget=4)

def probing(evaluate):
    def run(task):  # in the Ray worker
        import torch
        start = time.perf_counter()
        evaluation = evaluate(task)
        evaluation.metrics.update(
            cuda_visible_devices=float(os.environ.get("CUDA_VISIBLE_DEVICES", "-1").split(",")[0]),
            gpu_memory_mb=torch.cuda.max_memory_allocated() / 2**20,
            worker_seconds=time.perf_counter() - start,
        )
        return evaluation
    return run

executor = RayExecutor(workers=4, num_cpus=1, num_gpus=0.25)
with executor:
    evaluate = probing(estimator.evaluate_task)
    for i in range(4):
        executor.submit(evaluate, Task(i, strategy.ask(), seed=i))
    done = []
    while executor.in_flight():
        done += executor.wait()
for task, ev in sorted(done, key=lambda d: d[0].iteration):
    m = ev.metrics
    if ev.status != "ok":
        print(f"#{task.iteration + 1} failed: {ev.error}")
        continue
    print(f"#{task.iteration + 1}: val_acc {ev.score:.4f}, trained {ev.seconds:.1f} s on GPU "
          f"{int(m['cuda_visible_devices'])} (its CUDA_VISIBLE_DEVICES), "
          f"peak {m['gpu_memory_mb']:.0f} MiB")
EOF

step "retrain in bf16-mixed precision on the GPU, then evaluate"
timed "$PY" pipelines/retrain.py "${paths[@]}" trainer.precision=bf16-mixed 2>&1 \
  | grep -E "GPU available|precision|retraining|train acc|error" || true
timed "$PY" pipelines/evaluate.py "${paths[@]}" trainer.precision=bf16-mixed
cat "$OUT/retrain/metrics.json"
echo
echo "outputs: $OUT"

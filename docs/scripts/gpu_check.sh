#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md on a device machine (its own python3 with CUDA torch).
# Packages that machine lacks travel as wheels in .whl/, fetched beforehand where pip works:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#     -d .whl pytorch-frame==0.3.0 lightgbm==4.7.0
# Writes *.json and *.txt under $OUT.
# Usage: OUT=dir bash docs/scripts/gpu_check.sh SECTIONS [LOOP] [EPOCH_SETTING]
#   SECTIONS: comma-separated of smoke, finetune, loop, nondet, profile, epoch, compile
#   LOOP: relssl bench --loop settings; EPOCH_SETTING: BATCH:WORKERS:PRECISION of the 5 M-row epoch
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
SECTIONS=${1:-smoke,loop,nondet,profile}
LOOP=${2:-512:0:fp32,512:1:fp32,512:4:fp32,2048:4:fp32,4096:4:fp32,4096:8:fp32,4096:8:bf16,8192:8:bf16,16384:12:bf16}
IFS=: read -r EB EW EP <<< "${3:-16384:12:bf16}"
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torch_geometric, torch_frame, pandas; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available(), 'pyg', torch_geometric.__version__, 'pandas', pandas.__version__, 'threads', torch.get_num_threads())"
t0=$SECONDS
if has smoke; then
  echo "== smoke: every objective, workers, bf16; MoCo; fine-tuning"
  SMALL="--device cuda --epochs 1 --train-rows-per-epoch 4096 --eval-rows 2048 --no-progress"
  timeout 120 python3 -m relssl pretrain --objectives mcm,am,mv,lp,ctr,dae --workers 2 --precision bf16 $SMALL --out /tmp/s1 2>&1 | tail -4
  timeout 60 python3 -m relssl pretrain --objectives mcm,lp --combiner moco $SMALL --out /tmp/s2 2>&1 | tail -2
  timeout 90 python3 -m relssl finetune --init /tmp/s2 --task 'edge:Is Laundering' --label-fraction 0.1 --device cuda --epochs 1 --no-progress --out /tmp/f1 2>&1 | tail -2
fi
if has finetune; then
  echo "== fine-tuning on CUDA ($((SECONDS - t0)) s)"
  timeout 60 python3 -m relssl pretrain --objectives mcm --device cuda --epochs 1 --train-rows-per-epoch 4096 --eval-rows 2048 --no-progress --out /tmp/s3 2>&1 | tail -1
  timeout 90 python3 -m relssl finetune --init /tmp/s3 --task 'edge:Is Laundering' --label-fraction 0.1 --device cuda --epochs 1 --no-progress --out /tmp/f3 2>&1 | tail -3
fi
if has loop; then
  echo "== loop ($((SECONDS - t0)) s)"
  timeout 240 python3 -m relssl bench --loop "$LOOP" --rows 1000000 --device cuda --out "$OUT/loop.json" 2>&1 | tee "$OUT/loop.txt"
fi
if has nondet; then
  echo "== the loop without deterministic kernels ($((SECONDS - t0)) s)"
  timeout 90 python3 -c "
import relssl.train.seeding as seeding
seeding.deterministic_kernels = lambda: None
from relssl.bench import bench_loop
for r in bench_loop(1_000_000, [($EB, $EW, '$EP')], device='cuda'):
    print('non-deterministic kernels:', r)" 2>&1 | tail -2 | tee "$OUT/nondet.txt"
fi
if has profile; then
  echo "== profile ($((SECONDS - t0)) s)"
  timeout 90 python3 docs/scripts/profile_step.py --rows 1000000 --batch-size $EB --precision $EP > "$OUT/profile.txt" 2>&1
  tail -2 "$OUT/profile.txt"
fi
if has epoch; then
  echo "== 5 M-row epoch ($((SECONDS - t0)) s)"
  timeout 300 python3 -m relssl bench --epoch --rows 5000000 --device cuda --batch-size $EB --workers $EW --precision $EP \
    --out "$OUT/epoch.json" 2>&1 | tee "$OUT/epoch.txt"
fi
if has compile; then
  echo "== compile ($((SECONDS - t0)) s)"
  for mode in eager compile; do
    timeout 100 python3 docs/scripts/compile_check.py $mode --device cuda --batch-size $EB --steps 20 2>&1 | tail -2 | tee -a "$OUT/compile.txt"
  done
fi
echo "== done ($((SECONDS - t0)) s)"

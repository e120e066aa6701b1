#!/bin/sh
# GPU checks and benchmark of chainer_nets on one NVIDIA H100 (see README.md in this folder).
#
#   sh benchmarks/gpu/run_on_h100.sh STEP        (run from anywhere inside the repository)
#
# One STEP per device call, in this order, each call carrying .whl plus one dataset part
# (.stage0 .. .stage3; every call can take at most 64 MiB):
#
#   check     .stage0  install Chainer, CuPy-vs-NumPy check of every registered model
#   bench1    .stage1  benchmark wrn28_10
#   bench2    .stage2  benchmark resnet110 and fractalnet20
#   train     .stage3  assemble CIFAR-10, 1-epoch CLI training run of resnet20 on @cupy:0
#
# The dataset parts collect in $HOME/parts, which survives only while the machine stays warm
# (30 s after a call): issue the next call at once. Results are written to $OUT (the folder
# whose files come back); without $OUT they go to $HOME/gpu_out.
set -eu
step=${1:?usage: run_on_h100.sh check|bench1|bench2|train}
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/gpu_out}
mkdir -p "$OUT" "$HOME/parts"
export PYTHONUNBUFFERED=1

# Chainer 7.8.1 from the wheel built on the development machine (the GPU image has none).
if [ ! -d "$HOME/site/chainer" ]; then
  python3 -m pip install -q --no-index --no-deps --target "$HOME/site" .whl/*.whl
fi
export PYTHONPATH=$HOME/site:$PWD

# Collect whichever dataset parts this call (or an earlier one on this machine) carried.
for d in .stage0 .stage1 .stage2 .stage3; do
  if [ -d "$d" ]; then cp -n "$d"/* "$HOME/parts/"; fi
done
echo "dataset parts so far: $(ls "$HOME/parts" | tr '\n' ' ')"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import sys, numpy, cupy; print(sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)'
} 2>&1 | tee "$OUT/env_$step.txt"

case $step in
check)
  python3 benchmarks/gpu/check_correctness.py --device @cupy:0 --budget-s 420 --out "$OUT" 2>&1 | tee "$OUT/check.log"
  ;;
bench1)
  python3 benchmarks/gpu/bench.py --models wrn28_10 --budget-s 450 --out "$OUT" 2>&1 | tee "$OUT/bench1.log"
  ;;
bench2)
  python3 benchmarks/gpu/bench.py --models resnet110 fractalnet20 --budget-s 450 --out "$OUT" 2>&1 | tee "$OUT/bench2.log"
  ;;
train)
  for f in cifar-10.npz.part0 cifar-10.npz.part1 cifar-10.npz.part2 cifar-10.npz.part3 assemble SHA256; do
    if [ ! -f "$HOME/parts/$f" ]; then
      echo "missing $HOME/parts/$f: the machine was replaced; carry .stage0..3 again" >&2
      exit 3
    fi
  done
  sh "$HOME/parts/assemble" "$HOME/ds"
  export CHAINER_DATASET_ROOT=$HOME/ds
  python3 -m chainer_nets.train --model resnet20 --device @cupy:0 --epochs 1 \
    --out "$HOME/runs/gpu_smoke" 2>&1 | tee "$OUT/train.log"
  mkdir -p "$OUT/train"
  for f in result.json config.json log; do
    if [ -f "$HOME/runs/gpu_smoke/$f" ]; then cp "$HOME/runs/gpu_smoke/$f" "$OUT/train/"; fi
  done
  ;;
*)
  echo "unknown step $step (check|bench1|bench2|train)" >&2
  exit 2
  ;;
esac

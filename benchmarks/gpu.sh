#!/usr/bin/env bash
# The prepared GPU check: one command, under 8 minutes on one H200, for whoever is lent a GPU.
#
#   make gpu-check            # = bash benchmarks/gpu.sh runs/gpu-check-out
#
# It runs, in order, writing everything under runs/gpu-check/ (in the checkout, git-ignored),
# each stage under a time limit so that the whole ends inside one 10-minute device command:
#   1. the CUDA tests (CUDA-graph sampling == eager == naive, bf16 training, auto precision)
#   2. the full 30-epoch reference run (`make mnist`'s recipe) in the automatic precision,
#      compiled, with sample grids after epochs 20 and 30; killed at its limit, the next call
#      resumes it (--resume; its checkpoint stays in runs/gpu-check/mnist-reference/)
#   3. the CUDA benchmark tables, --quick: training step (library vs twin, by precision),
#      bf16-vs-fp32 NLL agreement, sampling (cached vs forward vs naive)
# and packs it all (no checkpoints) into <dest>/gpu-check.tar.gz with a summary.txt beside it.
#
# Needs: python3 with torch, torchvision, tqdm, matplotlib, einops, pytest, hypothesis (no
# install: PYTHONPATH=src), and MNIST's four .gz files in data/mnist/MNIST/raw/ (torchvision
# extracts them; copy them from ../shared/data/mnist/MNIST/raw/ before sending the tree).
#
# With this project's `device` tool: first, here, `mkdir -p data/mnist/MNIST/raw && cp
# ../shared/data/mnist/MNIST/raw/*.gz data/mnist/MNIST/raw/` (11 MB), then run the command
# `make gpu-check` with carry ["data"] and a 600 s limit; $OUT/gpu-check-out comes back.
#
# Afterwards, on the development machine: unpack, then commit
#   runs/gpu-check/bench/*          -> benchmarks/results/
#   runs/gpu-check/mnist-reference/ -> examples/results/mnist-reference/ (not checkpoint.pt)
# and package the weights:
#   python examples/package_weights.py runs/gpu-check/mnist-reference mnist-reference
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-runs/gpu-check-out}
WORK=runs/gpu-check
PY=${PYTHON:-python3}
DATA=${DATA_DIR:-data/mnist}
export PYTHONPATH=src PYTHONUNBUFFERED=1
mkdir -p "$WORK" "$DEST"
rm -rf "$WORK/bench" "$WORK"/*.log "$WORK/summary.txt"  # the reference run's folder stays: --resume
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$WORK/summary.txt"; }

stamp "gpu-check: $($PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())')"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_precision.py \
  tests/test_stepping.py > "$WORK/tests.log" 2>&1
stamp "tests: exit $?: $(tail -n 1 "$WORK/tests.log")"

# The reference run first: it matters most. Killed at its limit, it resumes on the next call.
timeout 330 $PY examples/mnist_pixelcnn.py --device cuda --precision auto --compile --resume \
  --data-dir "$DATA" --eval-batch-size 1000 --out "$WORK/mnist-reference" \
  > "$WORK/mnist.log" 2>&1
stamp "reference run: exit $?; $(grep -E '^(precision|done)' "$WORK/mnist.log" | tr '\n' ' ')"

timeout 150 $PY -m benchmarks --device cuda --quick --only train,precision,precision-nll,sampling \
  --out "$WORK/bench" > "$WORK/bench.log" 2>&1
stamp "benchmarks: exit $? ($(ls "$WORK/bench" 2>/dev/null | tr '\n' ' '))"

tar czf "$DEST/gpu-check.tar.gz" --exclude checkpoint.pt -C runs gpu-check
cp "$WORK/summary.txt" "$DEST/summary.txt"
stamp "packed into $DEST/gpu-check.tar.gz"

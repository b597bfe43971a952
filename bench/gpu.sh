#!/usr/bin/env bash
# The GPU checks, in one run on a lent card: the paper's MNIST run end to end (twice: cold,
# then with the persistent compilation cache warm), the 5 x 5 grid x 200 epochs, the
# CIFAR-10 step, and the revised method on MNIST-100.
#
#   bash bench/gpu.sh OUTDIR [revision_epochs]
#
# Uses the python3 found on PATH (its jax with a CUDA plugin). Wheels in .whl/ (pure-Python
# pins of this repository's requirements that the machine lacks) are installed first.
# Everything it writes goes under OUTDIR: logs, each run's results.json/timings.json, and
# bench/results for the card.
set -uo pipefail
DEST=${1:?usage: bench/gpu.sh OUTDIR [revision_epochs]}
REVISION_EPOCHS=${2:-0}
OUT=/tmp/exon_gpu_out
rm -rf "$OUT"; mkdir -p "$OUT" "$DEST"
pack() {  # everything in one archive (the device tool brings back few files)
  cp -r bench/results "$OUT/bench_results" 2>/dev/null
  tar czf "$DEST/gpu.tar.gz" -C "$OUT" . && cp "$OUT/walls.txt" "$DEST/" 2>/dev/null
}
trap pack EXIT
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export JAX_COMPILATION_CACHE_DIR=/tmp/exon_jax_cache
W=/tmp/exon_gpu_runs
rm -rf "$W" "$JAX_COMPILATION_CACHE_DIR"

{ nvidia-smi -L; python3 -c "import jax, flax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'orbax', o.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"

timed() {  # name, then the command: wall seconds of the whole process into OUT/walls.txt
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall_s=$(awk "BEGIN {print $EPOCHREALTIME - $t0}")" | tee -a "$OUT/walls.txt"
  tail -3 "$OUT/$name.log"
}

timed paper_cold python3 main.py --config=configs/mnist.py --workdir=$W/paper_cold
timed paper_warm python3 main.py --config=configs/mnist.py --workdir=$W/paper_warm
timed paper_profile python3 -m cProfile -o "$OUT/paper_profile.prof" main.py \
  --config=configs/mnist.py --workdir=$W/paper_profile
timed grid_5x5 python3 main.py --config=configs/mnist_sweep.py --config.train.epochs=200 \
  --workdir=$W/grid
timed cifar_step python3 bench/cifar_step.py
if [ "$REVISION_EPOCHS" -gt 0 ]; then
  timed revision python3 main.py --config=configs/mnist100_revision.py \
    --config.train.epochs="$REVISION_EPOCHS" --workdir=$W/revision
fi
for run in "$W"/*; do
  for f in results.json timings.json metrics.jsonl; do
    [ -f "$run/$f" ] && cp "$run/$f" "$OUT/$(basename "$run")_$f"
  done
done
cp -r "$W/paper_warm/figures" "$OUT/paper_figures" 2>/dev/null
ls -la "$OUT"

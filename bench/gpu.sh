#!/usr/bin/env bash
# The GPU checks, in one run on a lent card, each step cut off at a shared deadline:
#   1. the paper's MNIST run end to end with an empty compilation cache (cold),
#   2. the same run again with the cache filled by the first (warm),
#   3. the 5 x 5 lambda grid x 200 epochs,
#   4. the CIFAR-10 training step (bench/cifar_step.py),
#   5. optionally, the revised method on MNIST-100 for N epochs.
#
#   bash bench/gpu.sh DEST [deadline_seconds] [revision_epochs]
#
# Uses the python3 on PATH (its jax with a CUDA plugin). Wheels in .whl/ (pure-Python pins
# of this repository's requirements that the machine lacks) are installed first. After
# every step, DEST/gpu.tar.gz holds everything so far (logs, each run's results.json,
# timings.json, metrics.jsonl, the paper run's figures, bench/results) and DEST/walls.txt
# the wall seconds of each step, so a run cut short still returns what it measured.
set -uo pipefail
DEST=${1:?usage: bench/gpu.sh DEST [deadline_seconds] [revision_epochs]}
DEADLINE=$(( SECONDS + ${2:-540} ))
REVISION_EPOCHS=${3:-0}
OUT=/tmp/exon_gpu_out
W=/tmp/exon_gpu_runs
rm -rf "$OUT" "$W"; mkdir -p "$OUT" "$W" "$DEST"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
CACHE=/tmp/exon_jax_cache
rm -rf "$CACHE"

pack() {
  for run in "$W"/*; do
    [ -d "$run" ] || continue
    for f in results.json timings.json metrics.jsonl; do
      [ -f "$run/$f" ] && cp "$run/$f" "$OUT/$(basename "$run")_$f"
    done
  done
  [ -d "$W/paper_warm/figures" ] && cp -r "$W/paper_warm/figures" "$OUT/paper_figures"
  [ -d bench/results ] && cp -r bench/results "$OUT/bench_results"
  tar czf "$DEST/gpu.tar.gz" -C "$OUT" . && cp "$OUT/walls.txt" "$DEST/" 2>/dev/null
}

step() {  # name, then the command, cut off at the deadline
  local name=$1; shift
  local left=$(( DEADLINE - SECONDS ))
  if [ "$left" -lt 15 ]; then echo "$name skipped: deadline" | tee -a "$OUT/walls.txt"; return; fi
  local t0=$EPOCHREALTIME
  timeout "$left" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall_s=$(awk "BEGIN {print $EPOCHREALTIME - $t0}")" | tee -a "$OUT/walls.txt"
  tail -2 "$OUT/$name.log"
  pack
}

{ nvidia-smi -L; nproc; python3 -c "import jax, flax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'orbax', o.__version__, jax.devices())"; } 2>&1 | tee "$OUT/env.txt"

step paper_cold python3 main.py --config=configs/mnist.py --workdir=$W/paper_cold \
  --compilation_cache=$CACHE
step paper_warm python3 main.py --config=configs/mnist.py --workdir=$W/paper_warm \
  --compilation_cache=$CACHE
step grid python3 main.py --config=configs/mnist_sweep.py --config.train.epochs=200 \
  --workdir=$W/grid --compilation_cache=$CACHE
step cifar_step python3 -m bench.cifar_step --quick
if [ "$REVISION_EPOCHS" -gt 0 ]; then
  step revision python3 main.py --config=configs/mnist100_revision.py \
    --config.train.epochs="$REVISION_EPOCHS" --workdir=$W/revision --compilation_cache=$CACHE
fi
pack

#!/usr/bin/env bash
# Run on a GPU machine without internet (the workplace's lent device): the table1_gpu study in
# two attention modes side by side, then GPU benchmarks. Expects $OUT, wheels in .device_cache/whl
# and the shared model/data in .device_cache/shared. Not used by tests or CI.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device_cache/whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 BLOCKPRUNE_SHARED=$PWD/.device_cache/shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
common="logger=csv callbacks=no_carbon"
timeout 420 python3 -m blockprune.cli table1 --preset table1_gpu --out /tmp/study_head $common > /tmp/head.log 2>&1 &
timeout 420 python3 -m blockprune.cli table1 --preset table1_gpu_blocks --out /tmp/study_block $common > /tmp/block.log 2>&1 &
wait
for s in head block; do
  cp /tmp/study_$s/table1.md $OUT/table1_gpu_$s.md; cp /tmp/study_$s/accuracy_vs_speedup.png $OUT/gpu_$s.png
done
tar czf $OUT/results.tgz /tmp/study_*/baseline/results.json /tmp/study_*/pruned/*/results.json /tmp/*.log 2>/dev/null
base=/tmp/study_head/baseline; models="/tmp/study_head/pruned/0 /tmp/study_head/pruned/2 /tmp/study_head/pruned/4"
python3 -m blockprune.cli bench $base $models --device cuda --dtypes float32 float16 bfloat16 \
  --batch-sizes 1 32 128 --seq-lens 0 128 --typical-seq-len 38 --out /tmp/bench > /tmp/bench.log 2>&1
cp /tmp/bench/bench.md $OUT/bench_gpu.md
python3 -m blockprune.cli bench-train $base --accelerator gpu --precision bf16-mixed --seq-len 38 --out /tmp/bt 2>&1 | tail -8 > $OUT/step_overhead_gpu.md
cat $OUT/table1_gpu_head.md $OUT/table1_gpu_block.md $OUT/step_overhead_gpu.md
tail -5 /tmp/bench.log

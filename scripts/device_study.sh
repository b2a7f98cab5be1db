#!/usr/bin/env bash
# Run on a GPU machine without internet (the workplace's lent device): the table1_gpu study
# (baseline, then the KD-off and KD-on sweeps side by side on the one GPU), the report, then GPU
# benchmarks. Expects $OUT, wheels in .device_cache/whl and the shared model/data in
# .device_cache/shared. Not used by tests or CI.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .device_cache/whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1 BLOCKPRUNE_SHARED=$PWD/.device_cache/shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
common="logger=csv callbacks=no_carbon"
S=/tmp/study
timeout 420 python3 -m blockprune.cli table1 --preset table1_gpu --out $S/off $common "study.distill=[off]" > /tmp/off.log 2>&1 &
while [ ! -f $S/off/baseline/results.json ] && kill -0 $! 2>/dev/null; do sleep 2; done
timeout 400 python3 -m blockprune.cli table1 --preset table1_gpu --out $S/on --baseline $S/off/baseline $common "study.distill=[on]" > /tmp/on.log 2>&1
wait
python3 -m blockprune.cli report $S --out $OUT > /tmp/report.log 2>&1
tar czf $OUT/results.tgz $S/*/baseline/results.json $S/*/pruned/*/results.json /tmp/*.log 2>/dev/null
python3 -m blockprune.cli bench $S/off/baseline $S/off/pruned/0 $S/off/pruned/1 $S/off/pruned/2 --device cuda \
  --dtypes float32 float16 --batch-sizes 1 32 128 --seq-lens 0 128 --typical-seq-len 39 --repeats 30 --out $OUT > /tmp/bench.log 2>&1
python3 -m blockprune.cli bench-train $S/off/baseline --accelerator gpu --precision bf16-mixed --seq-len 39 \
  --attention-block head --out $OUT 2>&1 | tail -7 > $OUT/step_overhead_gpu.md
cat $OUT/table1.md $OUT/step_overhead_gpu.md; tail -3 /tmp/bench.log

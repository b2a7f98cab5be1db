#!/usr/bin/env bash
# Issue 14 item 5 on a lent GPU (nothing to train): models with the study's shapes
# (e5-small-mr's config, random weights; 12/9/6/3 heads and 1536/1152/768/384 FFN neurons per layer)
# timed eager and as torch.compile(mode="reduce-overhead") (one CUDA graph per shape), float16 and
# bfloat16, batch 1 and 32, at the data's length (39; BENCH_SEQ_LENS="0 128" adds 128). Each cell compiles
# each model anew: 16 compiles by default, time on a GPU not yet known (the 2-core AVX2 EPYC took 5 min for 8
# float32 cells), so give the run timeout_s=540 and fewer dtypes if it is cut. Needs only what the GPU
# machine has (torch, transformers); hydra/omegaconf are not imported on this path.
# Prepare here:  mkdir -p .device_cache/e5 && cp ../shared/models/e5-small-mr/config.json .device_cache/e5/
# Run:           device run, command "bash scripts/device_serving.sh", carry [".device_cache"]
# Not used by tests or CI. Results: $OUT/bench.json, bench.md, gpu.txt -> docs/benchmarks.md.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
# smoke test on a CPU: OUT=/tmp/x PYTHON=.venv/bin/python BENCH_DEVICE=cpu BENCH_DTYPES=float32 BENCH_BATCHES=1 bash scripts/device_serving.sh
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"${PYTHON:-python3}" - <<'PY' 2>&1 | tee "$OUT/log.txt"
import os, sys
from pathlib import Path
sys.path.insert(0, "scripts")
from shape_models import shape_models
from blockprune.bench import benchmark_models, save, to_markdown
models = shape_models(Path(".device_cache/e5"), [0.25, 0.5, 0.75])
result = benchmark_models(
    models, typical_seq_len=39, repeats=30, runtimes=["torch-compile"],
    seq_lens=[int(n) or None for n in os.environ.get("BENCH_SEQ_LENS", "0").split()],  # 0: the data's 39
    device=os.environ.get("BENCH_DEVICE", "cuda"),
    dtypes=os.environ.get("BENCH_DTYPES", "float16 bfloat16").split(),
    batch_sizes=[int(b) for b in os.environ.get("BENCH_BATCHES", "1 32").split()],
)
out = Path(os.environ["OUT"])
save(result, out / "bench.json")
(out / "bench.md").write_text(to_markdown(result), encoding="utf-8")
print(to_markdown(result))
PY

"""benchmark_models end to end on CPU (tiny models, tiny grid), overhead helper, loading."""

from __future__ import annotations

import json

import pytest
import torch

from blockprune.bench import (
    benchmark_models,
    save,
    to_markdown,
    training_step_overhead,
)
from blockprune.bench.runners import RUNNERS, Ready, Runner, register
from blockprune.errors import ConfigError
from helpers.tiny_bert import make_compacted, make_tiny

STAT_FIELDS = ("median_ms", "mean_ms", "min_ms", "p10_ms", "p90_ms", "q1_ms", "q3_ms", "iqr_ms", "repeats")
RESULT_FIELDS = STAT_FIELDS + (
    "throughput_seq_per_s",
    "throughput_tokens_per_s",
    "speedup",
    "flops_per_token",
    "params",
    "analytic_speedup",
    "measured_over_analytic",
    "achieved_gflops_per_s",
)


@pytest.fixture(scope="module")
def result():
    models = {"dense": make_tiny(3), "compact": make_compacted()}
    original = torch.get_num_threads()
    torch.set_num_threads(3)  # not the benchmark's threads=1: "restored" must mean back to 3
    try:
        out = benchmark_models(
            models,
            batch_sizes=(1, 4),
            seq_lens=(None, 32, 128),  # 128 > max positions (64): skipped with a note
            typical_seq_len=12,
            dtypes=("float32", "float16"),  # float16 skipped on CPU with a note
            warmup=1,
            repeats=3,
            threads=1,
            progress=False,
            max_tokens=100,  # 4 x 32 = 128 tokens: skipped
        )
        out["_threads_after"] = torch.get_num_threads()
    finally:
        torch.set_num_threads(original)
    return out


def test_benchmark_result_is_well_formed(result, tmp_path):
    assert result["baseline"] == "dense"
    env = result["environment"]
    for key in ("torch", "device", "device_name", "torch_threads", "date", "cpu_count"):
        assert env[key] not in (None, "")
    assert env["cpu"] and isinstance(env["cpu_flags"], list)  # CPU model + avx2/avx512_vnni/amx flags
    assert env["torch_threads"] == 1 and result["settings"]["threads"] == 1
    assert result["_threads_after"] == 3  # the caller's thread count, restored afterwards
    assert result["models"]["compact"]["heads_per_layer"] == [2, 1, 4]
    assert result["models"]["compact"]["ffn_per_layer"] == [50, 0, 128]

    cells = {(c["dtype"], c["batch"], c["seq_len"]): c for c in result["cells"]}
    ok = [c for c in result["cells"] if c["status"] == "ok"]
    assert sorted(k[1:] for k, c in cells.items() if c["status"] == "ok") == [(1, 12), (1, 32), (4, 12)]
    assert all(k[0] == "float32" for k, c in cells.items() if c["status"] == "ok")
    assert "max_tokens" in cells[("float32", 4, 32)]["note"]
    assert "maximum input length" in cells[("float32", 1, 128)]["note"]
    assert "float16" in cells[("float16", 1, 12)]["note"]
    assert cells[("float32", 1, 12)]["typical"] and not cells[("float32", 1, 32)]["typical"]

    for cell in ok:
        assert cell["repeats"] == 3
        for name in ("dense", "compact"):
            r = cell["results"][name]
            assert r["status"] == "ok"
            for field in RESULT_FIELDS:
                assert r[field] is not None, (name, field)
            assert r["median_ms"] > 0 and r["throughput_seq_per_s"] > 0 and r["repeats"] == 3
            assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        base, comp = cell["results"]["dense"], cell["results"]["compact"]
        assert base["speedup"] == 1.0 and base["analytic_speedup"] == 1.0
        assert comp["speedup"] == pytest.approx(base["median_ms"] / comp["median_ms"])
        assert comp["analytic_speedup"] == pytest.approx(base["flops_per_token"] / comp["flops_per_token"])
        assert comp["analytic_speedup"] > 1.5
        assert comp["measured_over_analytic"] == pytest.approx(comp["speedup"] / comp["analytic_speedup"])
        assert comp["params"] < base["params"]

    path = save(result, tmp_path / "bench" / "result.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded["cells"][0]["results"]["dense"]["speedup"] == 1.0
    md = to_markdown(loaded)
    assert "| dense |" in md and "| compact |" in md and "Skipped cells" in md and "float16" in md
    assert f"- cpu: {env['cpu']}; flags:" in md


def test_custom_cells_and_bad_settings():
    models = {"a": make_tiny(2), "b": make_tiny(2, seed=1)}
    r = benchmark_models(models, cells=[(2, None), (2, 8)], typical_seq_len=8, warmup=1, repeats=2, progress=False)
    assert [(c["batch"], c["seq_len"]) for c in r["cells"]] == [(2, 8)]  # duplicate (2, typical=8) removed
    with pytest.raises(ConfigError):
        benchmark_models(models, typical_seq_len=8, dtypes=("int8",), progress=False)
    with pytest.raises(ConfigError):
        benchmark_models({}, typical_seq_len=8)


def test_training_step_overhead():
    model = make_tiny(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    ids = torch.randint(1, 100, (2, 8), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1])

    def step(extra: int = 0):
        loss = model(input_ids=ids, labels=labels).loss
        for _ in range(extra):
            loss = loss + model(input_ids=ids, labels=labels).loss  # e.g. a teacher forward
        loss.backward()
        opt.step()
        opt.zero_grad()

    out = training_step_overhead(step, {"distill": lambda: step(1)}, repeats=3, warmup=1)
    assert set(out["steps"]) == {"dense", "distill"}
    assert out["ratio_vs_dense"]["dense"] == 1.0 and out["ratio_vs_dense"]["distill"] > 0
    assert all(s["median_ms"] > 0 and s["repeats"] == 3 for s in out["steps"].values())
    assert "| distill |" in to_markdown(out)


class _Counted(torch.nn.Module):
    """A benchmark entry of another backend: a PyTorch model behind a runner that counts its calls."""

    backend = "counted"

    def __init__(self, model, runs: list):
        super().__init__()
        self.flops_model, self.runs = model, runs


def test_a_registered_runner_times_its_backend_and_a_skipping_one_is_reported():
    runs: list = []

    def prepare(entry, dev, dtype):
        if dtype != "float32":
            return "counted entries run in float32 only."
        return Ready(lambda ids, mask: runs.append(entry.flops_model(input_ids=ids, attention_mask=mask)))

    register(Runner("counted", prepare))
    try:
        dense = make_tiny(2)
        r = benchmark_models(
            {"dense": dense, "counted": _Counted(make_compacted(), runs)},
            cells=[(2, 8)],
            typical_seq_len=8,
            warmup=2,
            repeats=3,
            progress=False,
        )
        cell = r["cells"][0]
        assert cell["status"] == "ok" and cell["results"]["counted"]["repeats"] == 3
        assert len(runs) == 2 + 3  # warm-up + timed runs, through the registered runner
        assert r["models"]["counted"]["backend"] == "counted"
        assert r["models"]["counted"]["heads_per_layer"] == [2, 1, 4]  # shapes from its flops_model
        only = benchmark_models(
            {"counted": _Counted(dense, runs)},
            cells=[(2, 8)],
            typical_seq_len=8,
            dtypes=("bfloat16",),
            warmup=1,
            repeats=2,
            progress=False,
        )
        assert only["cells"][0]["results"]["counted"] == {
            "status": "skipped",
            "note": "counted entries run in float32 only.",
        }
    finally:
        RUNNERS.pop("counted")
    with pytest.raises(ConfigError, match="backend 'counted'"):
        benchmark_models({"x": _Counted(dense, runs)}, cells=[(2, 8)], typical_seq_len=8, progress=False)


def test_a_compiling_entrys_first_run_does_not_count_against_the_cell_time_budget():
    """torch.compile's first call of a shape compiles (55 s for e5-small on 2 CPU cores): the budget
    estimate must come from the next call, or every compiled cell is skipped as too slow."""
    import time

    from blockprune.bench.cells import CellPlan, run_cell

    calls = {"eager": 0, "compiled": 0}

    def runner(name: str, compiles: bool) -> Ready:
        def run(ids, mask):
            calls[name] += 1
            time.sleep(0.5 if compiles and calls[name] == 1 else 0.001)

        return Ready(run, compiles=compiles)

    info = {n: {"flops_per_token": None, "parameters": {"total": 1}} for n in calls}
    plan = CellPlan(list(calls), info, torch.device("cpu"), 100, 64, 10_000, 0.1, 2, 5, 3, 0)
    cell = run_cell(
        plan,
        {"eager": runner("eager", False), "compiled": runner("compiled", True)},
        {},
        {"batch": 1, "seq_len": 8},
        "float32",
    )
    assert cell["status"] == "ok", cell["note"]
    assert cell["results"]["compiled"]["median_ms"] < 100 and cell["repeats"] >= 3


def test_shape_models_have_the_study_widths_in_every_layer(tmp_path):
    """scripts/shape_models.py (the GPU serving run's models): each sparsity removes that share of every
    layer's heads and FFN neurons, from a config alone."""
    import importlib.util

    from blockprune.flops import encoder_layout
    from helpers.paths import ROOT
    from helpers.tiny_bert import FFN, HEADS

    make_tiny().config.save_pretrained(tmp_path)
    spec = importlib.util.spec_from_file_location("shape_models", ROOT / "scripts" / "shape_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    models = module.shape_models(tmp_path, [0.5, 0.75], labels=3)
    assert list(models) == ["dense", "p50", "p75"]
    for name, keep in (("dense", 1.0), ("p50", 0.5), ("p75", 0.25)):
        layout = encoder_layout(models[name])
        assert {(x["heads"], x["ffn"]) for x in layout} == {(round(HEADS * keep), round(FFN * keep))}, name
    assert models["p50"].classifier.out_features == 3

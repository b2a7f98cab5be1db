"""Deployment runtimes: each one's predictions against PyTorch float32, the export into the
model folder (Optimum's file names, deploy.json), and the `deploy` section of a tiny job."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
from blockprune.cli import main as cli
from blockprune.data.reading import read_records
from blockprune.deploy import FILES, RUNTIMES, deploy_job, open_runtime, read_manifest
from blockprune.deploy.inference import predict_logits
from blockprune.errors import ConfigError
from blockprune.machine import CPU_FLAGS
from blockprune.models import load_model, load_tokenizer
from helpers.jobs import make_cfg
from helpers.paths import SHC_CSV
from helpers.saved_models import (
    LABELS,
    MAX_REDUCED_DIFF,
    compacted,
    exported,
    reduced_precision_agreement,
    save,
    tiny_classifier,
)


@pytest.fixture(scope="module")
def texts(headlines):
    return headlines


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("deploy") / "model", ["onnx", "onnx-int8"])[0]


def _logits(name, folder, texts):
    return predict_logits(open_runtime(name, folder), load_tokenizer(str(folder)), texts, max_length=128, batch_size=8)


def test_float32_onnx_gives_pytorch_logits(folder, texts):
    ref = _logits("torch", folder, texts)
    assert ref.shape == (len(texts), len(LABELS))
    assert np.abs(_logits("onnx", folder, texts) - ref).max() <= 1e-4


@pytest.mark.parametrize("name", ["onnx-int8", "torch-int8", "torch-bf16"])
def test_reduced_precision_agrees_with_float32(folder, texts, name):
    agreement, diff = reduced_precision_agreement(_logits(name, folder, texts), _logits("torch", folder, texts))
    print(f"{name}: agreement {agreement:.3f}, max |logit diff| {diff:.2e}")  # reported with -s


def test_exported_files_have_optimum_names_and_int8_keeps_the_classifier_fp32(folder):
    import onnx

    assert FILES == {
        "onnx": "model.onnx",
        "onnx-int8": "model_quantized.onnx",
        "openvino": "openvino_model.xml",
        "openvino-int8": "openvino_model_int8.xml",
    }
    assert (folder / "model.onnx").is_file() and (folder / "model_quantized.onnx").is_file()
    graph = onnx.load(str(folder / "model_quantized.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}  # the encoder is int8
    classifier = [n for n in graph.node if "classifier" in n.name]
    assert classifier and all(n.op_type in ("Gemm", "MatMul", "Add") for n in classifier)


def test_int8_quantises_a_graph_fused_by_onnxruntimes_transformer_optimiser(folder, texts, tmp_path):
    """Fused contrib ops (SkipLayerNormalization, BiasGelu) have outputs shape inference cannot type;
    the quantiser must still quantise the MatMuls after them (scripts/serving_cpu.py times this)."""
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    from blockprune.deploy.quantize import quantize_int8
    from blockprune.deploy.runtimes import OnnxRuntime

    fused = tmp_path / "fused.onnx"
    optimize_model(str(folder / "model.onnx"), model_type="bert", num_heads=0, hidden_size=0).save_model_to_file(
        str(fused)
    )
    assert {"SkipLayerNormalization"} <= {n.op_type for n in onnx.load(str(fused)).graph.node}
    quantized = quantize_int8(fused, tmp_path / "fused_int8.onnx")
    assert {n.op_type for n in onnx.load(str(quantized)).graph.node} & {"MatMulInteger", "DynamicQuantizeMatMul"}
    got = predict_logits(OnnxRuntime(quantized, "onnx-int8"), load_tokenizer(str(folder)), texts, max_length=128)
    reduced_precision_agreement(got, _logits("torch", folder, texts))


def test_optimum_loads_the_exported_folder(folder, texts):
    optimum = pytest.importorskip("optimum.onnxruntime")
    tokenizer = load_tokenizer(str(folder))
    enc = tokenizer(texts[:4], padding=True, return_tensors="pt")
    ref = load_model(folder)(**enc).logits.detach().numpy()
    for file_name in ("model.onnx", "model_quantized.onnx"):
        ort_model = optimum.ORTModelForSequenceClassification.from_pretrained(folder, file_name=file_name)
        got = ort_model(**enc).logits.detach().numpy()
        assert np.abs(got - ref).max() <= (1e-4 if file_name == "model.onnx" else MAX_REDUCED_DIFF)


def test_unknown_runtime_is_a_config_error(folder):
    with pytest.raises(ConfigError, match="onnx-int8"):
        open_runtime("onnx-int4", folder)
    assert set(RUNTIMES) >= {"torch", "onnx", "onnx-int8"}


def test_deploy_job_records_every_runtime_and_the_fastest(tmp_path, texts):
    dense = tiny_classifier()
    model = compacted(dense)
    path = save(model, tmp_path / "model")
    labels = [i % len(LABELS) for i in range(len(texts))]
    record = deploy_job(
        model,
        load_tokenizer(str(path)),
        path,
        dense,
        texts,
        labels,
        ["onnx", "onnx-int8"],
        seq_len=24,
        max_length=128,
        repeats=2,
        warmup=1,
    )
    rows = record["runtimes"]
    assert list(rows) == ["torch", "onnx", "onnx-int8"]
    assert rows["onnx"]["max_abs_logit_diff"] <= 1e-4 and rows["onnx"]["verified"]
    assert rows["torch"]["agreement"] == 1.0 and rows["torch"]["speedup_vs_dense_torch"]["batch_32"] > 0
    for row in rows.values():
        assert 0 <= row["accuracy"] <= 1 and row["n_texts"] == len(texts)
        assert row["accuracy"] == pytest.approx(sum(p == y for p, y in zip(row["predictions"], labels)) / len(texts))
        assert set(row["latency_ms"]) == {"batch_1", "batch_32"} and min(row["latency_ms"].values()) > 0
        assert row["throughput_per_s"]["batch_32"] == pytest.approx(32e3 / row["latency_ms"]["batch_32"])
        same = row["dense_latency_ms"]["batch_32"] / row["latency_ms"]["batch_32"]
        assert row["speedup_vs_dense_same_runtime"]["batch_32"] == pytest.approx(same)
    assert record["fastest"] in rows and rows[record["fastest"]]["verified"]
    assert set(record["environment"]["flags"]) <= set(CPU_FLAGS) and record["environment"]["threads"] >= 1
    assert read_manifest(path)["fastest"] == record["fastest"]
    assert "predictions" not in json.dumps(read_manifest(path))  # the served folder keeps no test predictions


def test_export_command_writes_the_folder_and_deploy_json(tmp_path, capsys):
    path = save(compacted(tiny_classifier()), tmp_path / "model")
    data = tmp_path / "check.csv"
    df = read_records(SHC_CSV).head(24)
    df.assign(Label=[LABELS[i % 3] for i in range(len(df))]).rename(columns={"text": "Text"})[["Text", "Label"]].to_csv(
        data, index=False
    )
    code = cli(
        [
            "export",
            str(path),
            "--runtime",
            "onnx",
            "onnx-int8",
            "--texts",
            str(data),
            "--label-column",
            "Label",
            "--repeats",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    manifest = read_manifest(path)
    assert summary["fastest"] == manifest["fastest"] in manifest["runtimes"]
    assert manifest["runtimes"]["onnx-int8"]["n_texts"] == 24 and "accuracy" in manifest["runtimes"]["onnx-int8"]
    assert (path / "model.onnx").is_file() and (path / "model_quantized.onnx").is_file()


def test_deploy_section_of_a_tiny_pruned_job(tmp_path):
    from blockprune.main import train

    cfg = make_cfg(
        tmp_path,
        [
            "prune=block",
            "prune.sparsity=0.5",
            "prune.attention_block=head",
            "deploy=cpu",
            "deploy.repeats=2",
            "deploy.warmup=1",
            "bench.repeats=2",
            "bench.warmup=1",
            "callbacks=no_carbon",
            "trainer.max_epochs=1",
        ],
    )
    results = train(cfg)
    section = results["deploy"]
    assert set(section["runtimes"]) == {"torch", "onnx", "onnx-int8"}
    assert len({row["n_texts"] for row in section["runtimes"].values()}) == 1
    for row in section["runtimes"].values():
        assert 0 <= row["accuracy"] <= 1 and row["n_texts"] > 0 and row["speedup_vs_dense_torch"]["batch_32"] > 0
    # the job's own PyTorch float32 accuracy is the compacted model's test accuracy
    final = results.get("metrics_final") or results["metrics_compacted"]
    assert section["runtimes"]["torch"]["accuracy"] == pytest.approx(final["test/acc"], abs=1e-6)
    assert section["dense_reference"] == "dense model of the job"
    model_dir = tmp_path / "model"
    assert (model_dir / "model_quantized.onnx").is_file() and read_manifest(model_dir)["fastest"] == section["fastest"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["deploy"]["fastest"] == section["fastest"]


def test_bench_cells_for_each_runtime():
    from blockprune.bench import benchmark_models

    dense = tiny_classifier()
    result = benchmark_models(
        {"dense": dense, "50%": compacted(dense)},
        runtimes=["onnx", "onnx-int8"],
        dtypes=["float32", "bfloat16"],
        cells=[(1, None), (32, None)],
        typical_seq_len=12,
        warmup=1,
        repeats=2,
        progress=False,
    )
    names = ["dense", "dense (onnx)", "dense (onnx-int8)", "50%", "50% (onnx)", "50% (onnx-int8)"]
    assert list(result["models"]) == names
    for cell in result["cells"]:
        assert (cell["batch"], cell["seq_len"]) in ((1, 12), (32, 12))
        res = cell["results"]
        torch_ok = {n for n in names if "(" not in n}
        assert all(res[n]["status"] == "ok" and res[n]["median_ms"] > 0 for n in torch_ok)  # torch fp32 and bf16
        for n in set(names) - torch_ok:  # onnxruntime: float32 graphs (int8 inside), skipped in the bfloat16 cells
            assert res[n]["status"] == ("ok" if cell["dtype"] == "float32" else "skipped")


def test_study_table_shows_the_best_deployed_runtime(tmp_path):
    from blockprune.report import build_table, to_markdown

    def job(name, sparsity, deploy=None):
        params = {"total": 4e6 * (1 - sparsity / 2), "encoder": 1e6, "word_embeddings": 3e6}
        results = {
            "status": "completed",
            "config": {"prune": {"sparsity": sparsity}, "seed": 1},
            "metrics": {"test/acc": 0.8, "test/f1_macro": 0.7},
            "params": params,
            "flops_per_token": 1e6 * (1 - sparsity),
            "dense": {"params": {"total": 4e6}, "flops_per_token": 1e6},
            "speed": {"speedup": 1.0 + sparsity},
        }
        if deploy:
            results["deploy"] = deploy
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))

    job("base", 0.0)
    job("half", 0.5, {"fastest": "onnx-int8", "best": {"runtime": "onnx-int8", "speedup": 3.71, "accuracy": 0.7912}})
    table = build_table([tmp_path]).set_index("row")
    assert table.loc["50% pruning", "deployed_runtime"] == "onnx-int8"
    assert table.loc["50% pruning", "deployed_speedup"] == pytest.approx(3.71)
    assert table.loc["50% pruning", "deployed_accuracy"] == pytest.approx(79.12)
    markdown = to_markdown(build_table([tmp_path]))
    assert "onnx-int8 3.71x 79.12" in markdown and "deployed: runtime, speed-up, accuracy" in markdown


def test_the_report_plots_each_verified_runtime_and_keeps_private_columns_out_of_the_csv(tmp_path, monkeypatch):
    import matplotlib.axes

    from blockprune import report

    rt = {"verified": True, "accuracy": 0.79, "speedup_vs_dense_torch": {"batch_1": 5.0, "batch_32": 3.0}}
    deploy = {"runtimes": {"onnx-int8": rt, "onnx": {**rt, "verified": False}}, "best": {"runtime": "onnx-int8"}}
    for name, sparsity in (("base", 0.0), ("half", 0.5)):
        results = {
            "status": "completed",
            "config": {"prune": {"sparsity": sparsity}, "seed": 1},
            "metrics": {"test/acc": 0.8, "test/f1_macro": 0.7},
            "params": {"total": 4e6, "encoder": 1e6, "word_embeddings": 3e6},
            "flops_per_token": 1e6,
            "dense": {"params": {"total": 4e6}, "flops_per_token": 1e6},
            "speed": {"speedup": 1.0 + sparsity},
            **({"deploy": deploy} if sparsity else {}),
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results))
    scattered = []
    real_scatter = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(
        matplotlib.axes.Axes,
        "scatter",
        lambda ax, xs, ys, **kw: scattered.append((kw["label"], list(xs), list(ys))) or real_scatter(ax, xs, ys, **kw),
    )
    report.write_report([tmp_path], tmp_path / "out")
    assert scattered == [("deployed: onnx-int8", [3.0], [pytest.approx(79.0)])]  # largest batch; unverified left out
    assert not [
        c for c in (tmp_path / "out" / "table1.csv").read_text().splitlines()[0].split(",") if c.startswith("_")
    ]


def test_deploy_config_is_checked(tmp_path):
    from blockprune.deploy import check_deploy_config

    check_deploy_config(make_cfg(tmp_path, []).deploy)  # default: nothing to deploy
    check_deploy_config(make_cfg(tmp_path, ["deploy=cpu"]).deploy)
    with pytest.raises(ConfigError, match="unknown runtime"):
        check_deploy_config(make_cfg(tmp_path, ["deploy.runtimes=[onnx,tflite]"]).deploy)
    with pytest.raises(ConfigError, match="deploy.repeats"):
        check_deploy_config(make_cfg(tmp_path, ["deploy=cpu", "deploy.repeats=0"]).deploy)
    with pytest.raises(ConfigError, match="deploy.calibration_texts=-1"):
        check_deploy_config(make_cfg(tmp_path, ["deploy=cpu", "deploy.calibration_texts=-1"]).deploy)


def test_cross_validation_folds_pool_into_one_deploy_section():
    from blockprune.deploy import pool_deploy

    def fold(n, acc_int8, verified_int8, latency_int8):
        row = {
            "n_texts": n,
            "agreement": 1.0,
            "max_abs_logit_diff": 0.0,
            "verified": True,
            "accuracy": 0.8,
            "accuracy_drop_points": 0.0,
            "latency_ms": {"batch_32": 10.0},
            "speedup_vs_dense_torch": {"batch_32": 1.0},
            "predictions": [n] * n,
        }
        int8 = {
            **row,
            "accuracy": acc_int8,
            "accuracy_drop_points": (0.8 - acc_int8) * 100,
            "agreement": 0.9,
            "max_abs_logit_diff": 0.01,
            "verified": verified_int8,
            "latency_ms": {"batch_32": latency_int8},
            "speedup_vs_dense_torch": {"batch_32": 10.0 / latency_int8},
        }
        return {
            "runtimes": {"torch": row, "onnx-int8": int8},
            "batch_sizes": [1, 32],
            "fastest": "onnx-int8",
            "best": {"runtime": "onnx-int8"},
        }

    pooled = pool_deploy([fold(100, 0.8, True, 4.0), fold(300, 0.76, True, 5.0)])
    assert pooled["runtimes"]["onnx-int8"]["accuracy"] == pytest.approx((0.8 * 100 + 0.76 * 300) / 400)
    assert pooled["runtimes"]["onnx-int8"]["n_texts"] == 400 and pooled["folds"] == 2
    assert pooled["runtimes"]["onnx-int8"]["predictions"] == [100] * 100 + [300] * 300  # fold order
    assert pooled["fastest"] == "onnx-int8" and pooled["best"]["speedup"] == pytest.approx(2.5)
    # a runtime that failed its re-test in one fold is not served
    assert pool_deploy([fold(100, 0.8, True, 4.0), fold(100, 0.7, False, 4.0)])["fastest"] == "torch"

    # a cross-validation job's results.json carries the pooled section
    from omegaconf import OmegaConf

    from blockprune.crossval import pooled_results

    cfg = OmegaConf.create({"task_name": "t", "data": {"cv_folds": 2, "seed": 0}, "paths": {"output_dir": "/tmp/x"}})
    folds = [
        {"metrics": {}, "data": {"label2id": {"a": 0}, "split_sizes": {}}, "deploy": fold(100, 0.8, True, 4.0)},
        {"metrics": {}, "data": {"label2id": {"a": 0}, "split_sizes": {}}, "deploy": fold(300, 0.76, True, 5.0)},
    ]
    assert pooled_results(cfg, folds, 1.0)["deploy"]["runtimes"]["onnx-int8"]["n_texts"] == 400


def test_deployed_accuracy_pairs_the_stored_deploy_predictions_with_the_dense_fp32_ones(tmp_path):
    """scripts/deployed_accuracy.py --stored: each job's runtimes (pooled CV predictions) paired by example
    id with the baseline's PyTorch fp32 predictions, nothing re-exported; a job without deploy is refused."""
    import importlib.util

    from helpers.paths import ROOT

    spec = importlib.util.spec_from_file_location("deployed_accuracy", ROOT / "scripts" / "deployed_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ids, target = [f"x{i}" for i in range(100)], [i % 4 for i in range(100)]

    def job(name, sparsity, torch_pred, int8_pred, order=slice(None)):
        speed = {"batch_1": 1.0 + sparsity, "batch_32": 1.0 + 2 * sparsity}
        runtime = {"verified": True, "agreement": 1.0, "speedup_vs_dense_torch": speed}
        runtime |= {"speedup_vs_dense_same_runtime": speed, "latency_ms": {"batch_32": 1.0}}
        results = {
            "config": {"prune": {"sparsity": sparsity} if sparsity else {}, "distill": {"alpha": 0.5}},
            "predictions": {"id": ids[order], "target": target[order], "pred": torch_pred[order]},
            "deploy": {
                "runtimes": {"torch": {**runtime, "predictions": torch_pred[order]}},
                "seq_len": 40,
                "folds": 5,
                "environment": {"flags": ["avx2"]},
            },
        }
        results["deploy"]["runtimes"]["onnx-int8"] = {**runtime, "predictions": int8_pred[order]}
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "results.json").write_text(json.dumps(results))
        return tmp_path / name

    wrong = [(t + 1) % 4 for t in target]
    base = job("baseline", 0.0, target, target)  # dense fp32 and int8 both right everywhere
    pruned_int8 = wrong[:6] + target[6:]  # served in int8, the pruned model gets 6 of 100 wrong
    pruned = job("pruned/0", 0.5, target, pruned_int8, order=slice(None, None, -1))  # its folds' order
    rows = module.stored_rows([base, pruned])
    assert set(rows) == {"baseline", "50% pruning + KD"}
    int8 = rows["50% pruning + KD"]["runtimes"]["onnx-int8"]
    assert int8["accuracy"] == pytest.approx(94.0) and int8["vs_dense_torch_fp32"]["diff_acc"] == pytest.approx(-6.0)
    assert int8["vs_dense_torch_fp32"]["p_mcnemar"] == pytest.approx(2 / 2**6)
    assert int8["speedup_vs_dense_torch"] == {"batch_1": 1.5, "batch_32": 2.0}
    assert rows["baseline"]["runtimes"]["onnx-int8"]["vs_dense_torch_fp32"]["diff_acc"] == 0.0
    assert rows["50% pruning + KD"]["folds"] == 5 and rows["50% pruning + KD"]["sparsity"] == 0.5

    results = json.loads((pruned / "results.json").read_text())
    del results["deploy"]
    (pruned / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="no deploy section"):
        module.stored_rows([base, pruned])

    # re-exporting (no --stored) takes a cross-validated job's folds in fold order, each with its own model
    for k in (10, 2, 0, 1):
        (pruned / f"fold_{k}").mkdir()
        (pruned / f"fold_{k}" / "results.json").write_text("{}")
    (pruned / "fold_3").mkdir()  # no results.json: not a finished fold
    assert [p.name for p in module.model_units(pruned)] == ["fold_0", "fold_1", "fold_2", "fold_10"]

    # a study run with --baseline keeps its baseline outside: study.json names it
    study = tmp_path / "study"
    (study / "pruned").mkdir(parents=True)
    pruned.rename(study / "pruned" / "0")
    with pytest.raises(SystemExit, match="no baseline/ folder"):
        module.study_jobs(study)
    (study / "study.json").write_text(json.dumps({"baselines": [str(base)], "baseline_given": True}))
    assert module.study_jobs(study) == [base.resolve(), study / "pruned" / "0"]
    assert module.model_units(base) == [base]


@pytest.mark.slow  # two inductor compiles on CPU (about a minute on 2 cores)
def test_torch_compile_entry_gives_the_eager_logits_and_bench_cells():
    import torch

    from blockprune.bench import benchmark_models
    from blockprune.bench.runners import RUNNERS
    from blockprune.bench.runtimes import RuntimeModule

    model = compacted(tiny_classifier())
    runner, cpu = RUNNERS["torch-compile"], torch.device("cpu")
    ids = torch.randint(1, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    ready = runner.prepare(RuntimeModule(None, "torch-compile", model), cpu, "float32")
    with torch.no_grad():
        got, ref = ready.run(ids, torch.ones_like(ids)).logits, model(input_ids=ids).logits
    assert torch.allclose(got, ref, atol=1e-4)
    assert "float16 is skipped" in runner.prepare(RuntimeModule(None, "torch-compile", model), cpu, "float16")
    result = benchmark_models(
        {"50%": model},
        runtimes=["torch-compile"],
        dtypes=["float32"],
        cells=[(1, None)],
        typical_seq_len=12,
        warmup=1,
        repeats=2,
        progress=False,
    )
    assert list(result["models"]) == ["50%", "50% (torch-compile)"]
    info = result["models"]["50% (torch-compile)"]
    assert info["backend"] == "torch-compile" and info["parameters"] == result["models"]["50%"]["parameters"]
    (cell,) = result["cells"]
    assert cell["results"]["50% (torch-compile)"]["status"] == "ok"
    assert cell["results"]["50% (torch-compile)"]["median_ms"] > 0

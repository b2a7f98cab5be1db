"""The OpenVINO runtime: the exported IR against PyTorch float32, Optimum Intel's file names, a user's
own IR never replaced, the deploy section, and the error that names the extra when OpenVINO is missing."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
import openvino as ov

from blockprune.atomic import OutputExistsError
from blockprune.deploy import deploy_job, export_runtime, open_runtime, read_manifest
from blockprune.deploy.inference import predict_logits
from blockprune.deploy.runtimes import check_runtimes
from blockprune.errors import ConfigError
from blockprune.models import load_tokenizer
from helpers.saved_models import LABELS, compacted, exported, reduced_precision_agreement, save, tiny_classifier


@pytest.fixture(scope="module")
def texts(headlines):
    return headlines


@pytest.fixture(scope="module")
def ir(tmp_path_factory):
    path, _, (xml,) = exported(tmp_path_factory.mktemp("openvino") / "model", ["openvino"])
    return path, xml


def test_export_writes_optimum_intel_files_with_float32_weights(ir):
    path, xml = ir
    assert xml == path / "openvino_model.xml" and (path / "openvino_model.bin").is_file()
    assert (path / "model.onnx").is_file()  # converted from the ONNX export
    model = ov.Core().read_model(str(xml))
    types = {op.get_output_element_type(0) for op in model.get_ordered_ops() if op.get_type_name() == "Constant"}
    assert ov.Type.f32 in types and ov.Type.f16 not in types  # not compressed to float16 on save
    assert not list(path.glob(".openvino_model.xml.*"))  # no temporary left behind


def test_openvino_logits_match_pytorch_in_the_plugins_precision(ir, texts):
    path, _ = ir
    tokenizer = load_tokenizer(str(path))
    runtime = open_runtime("openvino", path)
    ref = predict_logits(open_runtime("torch", path), tokenizer, texts, max_length=128, batch_size=8)
    got = predict_logits(runtime, tokenizer, texts, max_length=128, batch_size=8)
    assert got.shape == (len(texts), len(LABELS))
    if "32" in runtime.precision:
        assert float(np.abs(got - ref).max()) <= 1e-4
    else:  # bfloat16 on CPUs with AMX / AVX512-BF16
        agreement, diff = reduced_precision_agreement(got, ref)
        print(f"openvino ({runtime.precision}): agreement {agreement:.3f}, max |logit diff| {diff:.2e}")


def test_an_ir_blockprune_did_not_write_is_never_replaced(tmp_path, ir):
    path, _ = ir
    folder = save(compacted(tiny_classifier(seed=1)), tmp_path / "model")
    # an IR from another tool (same graph, no blockprune producer tag)
    ov.save_model(ov.convert_model(str(path / "model.onnx")), str(folder / "openvino_model.xml"))
    before = (folder / "openvino_model.bin").read_bytes()
    model = compacted(tiny_classifier(seed=1))
    with pytest.raises(OutputExistsError, match="not written by blockprune"):
        export_runtime(model, load_tokenizer(str(folder)), folder, "openvino")
    assert (folder / "openvino_model.bin").read_bytes() == before
    export_runtime(model, load_tokenizer(str(folder)), folder, "openvino", overwrite=True)
    export_runtime(model, load_tokenizer(str(folder)), folder, "openvino")  # ours now: replaced freely
    assert (folder / "openvino_model.bin").read_bytes() != before


def test_deploy_job_re_tests_and_times_openvino(tmp_path, texts):
    dense = tiny_classifier()
    model = compacted(dense)
    path = save(model, tmp_path / "model")
    labels = [i % len(LABELS) for i in range(len(texts))]
    record = deploy_job(
        model, load_tokenizer(str(path)), path, dense, texts, labels, ["openvino"], seq_len=24, repeats=2, warmup=1
    )
    row = record["runtimes"]["openvino"]
    torch_accuracy = record["runtimes"]["torch"]["accuracy"]
    assert row["file"] == "openvino_model.xml" and row["n_texts"] == len(texts)
    assert row["precision"] in ("bf16", "f32", "f16")
    assert row["accuracy_drop_points"] == pytest.approx((torch_accuracy - row["accuracy"]) * 100)
    assert row["verified"] == (row["accuracy_drop_points"] <= 0.5)
    assert row["speedup_vs_dense_torch"]["batch_32"] > 0 and row["speedup_vs_dense_same_runtime"]["batch_1"] > 0


def test_missing_openvino_is_a_config_error_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ConfigError, match=r'pip install "blockprune\[openvino\]"'):
        check_runtimes(["onnx", "openvino"])
    assert check_runtimes(["onnx"]) == ["onnx"]


def test_bench_cell_for_openvino():
    from blockprune.bench import benchmark_models

    dense = tiny_classifier()
    result = benchmark_models(
        {"dense": dense, "50%": compacted(dense)},
        runtimes=["openvino"],
        dtypes=["float32", "bfloat16"],
        cells=[(1, None), (32, None)],
        typical_seq_len=12,
        warmup=1,
        repeats=2,
        progress=False,
    )
    assert list(result["models"]) == ["dense", "dense (openvino)", "50%", "50% (openvino)"]
    for cell in result["cells"]:
        res = cell["results"]
        for name in ("dense (openvino)", "50% (openvino)"):  # the float32 graph; skipped in the bfloat16 cells
            assert res[name]["status"] == ("ok" if cell["dtype"] == "float32" else "skipped")
            if cell["dtype"] == "float32":
                assert res[name]["median_ms"] > 0
    info = result["models"]["50% (openvino)"]
    assert info["backend"] == "openvino" and info["parameters"] == result["models"]["50%"]["parameters"]


needs_nncf = pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="nncf (the openvino extra) is missing")


@needs_nncf
def test_openvino_int8_is_quantised_calibrated_and_served_under_its_own_name(tmp_path, texts):
    path = save(compacted(tiny_classifier()), tmp_path / "model")
    tokenizer = load_tokenizer(str(path))
    model = compacted(tiny_classifier())
    xml = export_runtime(model, tokenizer, path, "openvino-int8", calibration_texts=texts[20:])
    assert xml == path / "openvino_model_int8.xml" and xml.with_suffix(".bin").is_file()
    ir = ov.Core().read_model(str(xml))
    assert ir.get_rt_info("producer").astype(str) == "blockprune"
    assert "FakeQuantize" in {op.get_type_name() for op in ir.get_ordered_ops()}  # really quantised
    runtime = open_runtime("openvino-int8", path)
    assert runtime.name == "openvino-int8"
    got = predict_logits(runtime, tokenizer, texts[:20], max_length=128, batch_size=8)
    ref = predict_logits(open_runtime("torch", path), tokenizer, texts[:20], max_length=128, batch_size=8)
    agreement, diff = reduced_precision_agreement(got, ref)
    print(f"openvino-int8: agreement {agreement:.3f}, max |logit diff| {diff:.2e}")


@needs_nncf
def test_openvino_int8_without_calibration_texts_names_the_fix_and_writes_nothing(tmp_path):
    path = save(compacted(tiny_classifier()), tmp_path / "model")
    with pytest.raises(ConfigError, match="--calibration FILE"):
        export_runtime(compacted(tiny_classifier()), load_tokenizer(str(path)), path, "openvino-int8")
    assert not list(path.glob("openvino_model_int8*")) and not list(path.glob(".openvino*"))


@needs_nncf
def test_deploy_job_re_tests_openvino_int8_calibrated_on_other_texts(tmp_path, texts):
    dense = tiny_classifier()
    model = compacted(dense)
    path = save(model, tmp_path / "model")
    labels = [i % len(LABELS) for i in range(20)]
    record = deploy_job(
        model,
        load_tokenizer(str(path)),
        path,
        dense,
        texts[:20],
        labels,
        ["openvino-int8"],
        seq_len=24,
        repeats=2,
        warmup=1,
        calibration_texts=texts[20:],
    )
    row = record["runtimes"]["openvino-int8"]
    assert row["file"] == "openvino_model_int8.xml" and row["n_texts"] == 20
    assert row["accuracy_drop_points"] == pytest.approx(
        (record["runtimes"]["torch"]["accuracy"] - row["accuracy"]) * 100
    )
    assert row["verified"] == (row["accuracy_drop_points"] <= 0.5)
    assert row["speedup_vs_dense_torch"]["batch_32"] > 0 and row["speedup_vs_dense_same_runtime"]["batch_1"] > 0


def test_a_job_calibrates_on_its_training_split_never_its_test_split(monkeypatch):
    from blockprune.deploy import measure

    class Data:
        max_length = 64

        def texts(self, split):
            return [f"{split} {i}" for i in range(1000 if split == "train" else 50)]

        def labels(self, split):
            return [0] * 50

    seen = {}
    monkeypatch.setattr(measure, "deploy_job", lambda *a, **kw: seen.update(kw) or {})
    deploy = {"runtimes": ["openvino-int8"], "calibration_texts": 256, "int8": {}}
    measure.deploy_after_job(None, None, "m", None, Data(), deploy, seq_len=16)
    calibration = seen["calibration_texts"]
    assert len(calibration) == 256 and all(t.startswith("train ") for t in calibration)
    assert calibration[-1] == "train 765"  # spread over the split, not its first 256 rows
    assert measure.calibration_sample(["a", "b"], 256) == ["a", "b"] and measure.calibration_sample(["a"], 0) == []


def test_missing_nncf_is_a_config_error_naming_it_and_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(ConfigError, match=r'needs the nncf package\. Fix: pip install "blockprune\[openvino\]"'):
        check_runtimes(["openvino-int8"])
    assert check_runtimes(["openvino"]) == ["openvino"]


@needs_nncf
def test_export_command_calibrates_openvino_int8_on_the_calibration_file(tmp_path, texts, capsys):
    from blockprune.cli import main as cli

    path = save(compacted(tiny_classifier()), tmp_path / "model")
    calibration = tmp_path / "train.txt"
    calibration.write_text("\n".join(texts[20:]) + "\n", encoding="utf-8")
    args = ["export", str(path), "--runtime", "openvino-int8", "--calibration", str(calibration), "--repeats", "1"]
    assert cli(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["fastest"] in ("torch", "openvino-int8")  # stdout: the JSON alone
    assert read_manifest(path)["runtimes"]["openvino-int8"]["file"] == "openvino_model_int8.xml"
    assert (path / "openvino_model_int8.xml").is_file()
    assert cli(["predict", str(path), str(calibration), "--runtime", "openvino-int8", "--no-progress"]) == 0
    served = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(served) == len(texts) - 20 and {r["label"] for r in served} <= set(LABELS)


@needs_nncf
def test_bench_times_openvino_int8_calibrated_on_the_calibration_file(tmp_path, texts, capsys):
    """`blockprune bench --runtimes openvino-int8 --calibration FILE`: an int8 entry per model, timed in
    the float32 cells beside the PyTorch ones; without the file the error names the flag."""
    from blockprune.cli import main as cli

    dense = tiny_classifier()
    base, pruned = save(dense, tmp_path / "dense"), save(compacted(dense), tmp_path / "p50")
    calibration = tmp_path / "train.txt"
    calibration.write_text("\n".join(texts[20:]) + "\n", encoding="utf-8")
    args = ["bench", str(base), str(pruned), "--batch-sizes", "1", "8", "--seq-lens", "12", "--repeats", "2"]
    args += ["--warmup", "1", "--runtimes", "openvino-int8", "--out", str(tmp_path / "bench")]
    assert cli([*args, "--calibration", str(calibration)]) == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert list(result["models"]) == ["dense", "dense (openvino-int8)", "p50", "p50 (openvino-int8)"]
    assert result["models"]["p50 (openvino-int8)"]["backend"] == "openvino"
    assert result["settings"]["calibration_texts"] == len(texts) - 20
    for cell in result["cells"]:
        assert cell["results"]["p50 (openvino-int8)"]["median_ms"] > 0
    capsys.readouterr()
    assert cli(args) == 2
    assert "--calibration FILE" in capsys.readouterr().err


@needs_nncf
def test_a_tiny_job_deploys_openvino_int8_calibrated_on_its_training_split(tmp_path):
    from blockprune.main import train
    from helpers.jobs import make_cfg

    overrides = ["deploy=cpu", "deploy.runtimes=[openvino-int8]", "deploy.calibration_texts=24", "deploy.repeats=2"]
    overrides += ["deploy.warmup=1", "bench.repeats=2", "bench.warmup=1", "callbacks=no_carbon", "trainer.max_epochs=1"]
    results = train(make_cfg(tmp_path, overrides))
    row = results["deploy"]["runtimes"]["openvino-int8"]
    assert row["file"] == "openvino_model_int8.xml" and row["n_texts"] > 0 and 0 <= row["accuracy"] <= 1
    ir = ov.Core().read_model(str(tmp_path / "model" / "openvino_model_int8.xml"))
    assert int(ir.get_rt_info("blockprune_calibration_texts").astype(str)) == 24

"""The OpenVINO runtime: the exported IR against PyTorch float32, Optimum Intel's file names, a user's
own IR never replaced, the deploy section, and the error that names the extra when OpenVINO is missing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
import openvino as ov

from blockprune.atomic import OutputExistsError
from blockprune.deploy import deploy_job, export_runtime, open_runtime
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

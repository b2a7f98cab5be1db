"""ONNX export of a compacted (sliced) tiny classifier: round trip through onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
from blockprune.bench import benchmark_models  # noqa: E402
from blockprune.deploy.onnx_export import OnnxRuntimeClassifier, check_onnx, export_onnx  # noqa: E402
from helpers.tiny_bert import compact_layer, make_compacted, make_tiny


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = make_compacted()
    path = export_onnx(model, None, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return model, path


def test_onnx_round_trip_compacted(exported):
    model, path = exported
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    assert check_onnx(model, path, 4) <= 1e-4
    # other shapes than the export example: dynamic batch and sequence axes
    ids = torch.randint(1, 100, (5, 33), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[2, 20:] = 0
    assert check_onnx(model, path, {"input_ids": ids, "attention_mask": mask}) <= 1e-4

    import onnx

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["heads_per_layer"] == "[2, 1, 4]" and meta["ffn_per_layer"] == "[50, 0, 128]"
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in proto.graph.output] == ["logits"]


def test_onnx_runs_without_torch_or_blockprune(exported, tmp_path):
    model, path = exported
    ids = torch.randint(1, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.numpy()
    np.save(tmp_path / "ids.npy", ids.numpy())
    script = f"""
import sys
sys.modules["torch"] = None; sys.modules["blockprune"] = None; sys.modules["transformers"] = None
import numpy as np, onnxruntime as ort
ids = np.load({str(tmp_path / "ids.npy")!r})
s = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
feed = {{"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}}
out = s.run(["logits"], feed)[0]
np.save({str(tmp_path / "out.npy")!r}, out)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert np.abs(np.load(tmp_path / "out.npy") - want).max() <= 1e-4


def test_onnx_zero_head_layer_and_no_token_types(tmp_path):
    class Tok:  # what export_onnx reads from a tokenizer
        model_input_names = ["input_ids", "attention_mask"]

    model = make_tiny(2)
    compact_layer(model, 0, [], range(10))  # a layer with no heads left
    path = export_onnx(model, Tok(), tmp_path / "m.onnx")
    import onnxruntime as ort

    assert [i.name for i in ort.InferenceSession(str(path)).get_inputs()] == ["input_ids", "attention_mask"]
    assert check_onnx(model, path, 3) <= 1e-4


def test_onnxruntime_entry_in_benchmark(exported):
    model, path = exported
    ort_model = OnnxRuntimeClassifier(path, threads=1, flops_model=model)
    assert list(ort_model.parameters()) == []
    r = benchmark_models(
        {"compact": model, "compact-ort": ort_model},
        cells=[(2, None)],
        typical_seq_len=10,
        warmup=1,
        repeats=2,
        progress=False,
    )
    res = r["cells"][0]["results"]
    assert r["models"]["compact-ort"]["backend"] == "onnxruntime"
    assert res["compact-ort"]["status"] == "ok" and res["compact-ort"]["median_ms"] > 0
    assert res["compact-ort"]["analytic_speedup"] == pytest.approx(1.0)


@pytest.mark.slow
def test_dynamo_exporter(tmp_path):
    model = make_compacted()
    path = export_onnx(model, None, tmp_path / "d.onnx", exporter="dynamo")
    assert check_onnx(model, path, 4) <= 1e-4

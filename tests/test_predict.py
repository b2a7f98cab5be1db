"""Serving: `blockprune predict` on a file and on stdin (with bad input), and blockprune.pipeline
on a compacted model."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

import blockprune
from blockprune.cli import main as cli
from blockprune.data.reading import read_records
from blockprune.deploy.manifest import write_manifest
from blockprune.models import load_model, load_tokenizer
from helpers.paths import SHC_CSV
from helpers.saved_models import LABELS, compacted, save, tiny_classifier


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save(compacted(tiny_classifier()), tmp_path_factory.mktemp("predict") / "model")


@pytest.fixture(scope="module")
def texts():
    return read_records(SHC_CSV)["text"].tolist()[:20]


def _torch_labels(folder, texts):
    tok = load_tokenizer(str(folder))
    logits = load_model(folder)(**tok(texts, padding=True, truncation=True, return_tensors="pt")).logits.detach()
    probs = logits.softmax(-1).numpy()
    return [LABELS[i] for i in probs.argmax(-1)], probs.max(-1)


def _stdin(monkeypatch, data: str):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode("utf-8")), encoding="utf-8"))


def test_predict_a_csv_file_gives_pytorch_labels_in_input_order(folder, texts, tmp_path, capsys):
    data = tmp_path / "in.csv"
    import pandas as pd

    pd.DataFrame({"Text": texts}).to_csv(data, index=False)
    assert cli(["predict", str(folder), str(data), "--runtime", "torch", "--batch-size", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want, scores = _torch_labels(folder, texts)
    assert [r["row"] for r in rows] == list(range(2, 2 + len(texts)))  # file lines, header on line 1
    assert [r["label"] for r in rows] == want
    assert np.allclose([r["score"] for r in rows], scores, atol=1e-5)


def test_predict_uses_the_runtime_recorded_for_the_folder_and_writes_csv(folder, texts, tmp_path, capsys):
    from blockprune.deploy import export_runtime

    export_runtime(load_model(folder), load_tokenizer(str(folder)), folder, "onnx")
    write_manifest(folder, {"fastest": "onnx"})
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"Text": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "out" / "pred.csv"
    assert cli(["predict", str(folder), str(data), "--out", str(out), "--with-text"]) == 0
    assert "runtime: onnx" in capsys.readouterr().err
    import pandas as pd

    got = pd.read_csv(out)
    assert list(got.columns) == ["row", "text", "label", "score"] and got["text"].tolist() == texts
    assert got["label"].tolist() == _torch_labels(folder, texts)[0]


def test_predict_from_stdin_lines_and_jsonl(folder, texts, monkeypatch, capsys):
    want = _torch_labels(folder, texts[:3])[0]
    _stdin(monkeypatch, "\n".join(texts[:3]) + "\n")
    assert cli(["predict", str(folder), "-", "--runtime", "torch", "--no-progress"]) == 0
    assert [json.loads(x)["label"] for x in capsys.readouterr().out.splitlines()] == want
    _stdin(monkeypatch, "".join(json.dumps({"Text": t}) + "\n" for t in texts[:3]))
    assert cli(["predict", str(folder), "-", "--runtime", "torch", "--output-format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "row,label,score" and [x.split(",")[1] for x in lines[1:]] == want


@pytest.mark.parametrize(
    ("data", "args", "message"),
    [
        ('{"Txt": "a"}\n', [], "no column 'Text'"),
        ('{"Text": "a"}\nnot json\n', [], "line 2: not valid JSON"),
        ("", [], "no text"),
        ("Text\n", ["--format", "csv"], "no data rows"),
    ],
)
def test_bad_stdin_gets_a_clear_error(folder, monkeypatch, capsys, data, args, message):
    _stdin(monkeypatch, data)
    assert cli(["predict", str(folder), "-", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "<stdin>" in err and "Traceback" not in err


def test_bad_files_get_clear_errors_and_no_output(folder, tmp_path, capsys):
    out = tmp_path / "pred.jsonl"
    bad = tmp_path / "in.csv"
    bad.write_text("Headline,Label\nx,y\n")
    assert cli(["predict", str(folder), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no column 'Text'" in err and "--text-column" in err and not out.exists()
    (tmp_path / "in.xlsx").write_bytes(b"PK")
    assert cli(["predict", str(folder), str(tmp_path / "in.xlsx")]) == 2
    assert "unsupported file type" in capsys.readouterr().err
    assert cli(["predict", str(folder), str(tmp_path / "missing.csv")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert cli(["predict", str(folder), str(bad), "--text-column", "Headline", "--runtime", "onnx-int8"]) == 2
    assert "model_quantized.onnx does not exist" in capsys.readouterr().err  # not exported: says how to


def test_pipeline_on_a_compacted_model(folder, texts):
    pipe = blockprune.pipeline(folder)
    got = pipe(texts[:5])
    want, scores = _torch_labels(folder, texts[:5])
    assert [g["label"] for g in got] == want
    assert np.allclose([g["score"] for g in got], scores, atol=1e-5)

"""Failure behaviour of real jobs: a bad input stops a run cleanly; a failed job never takes a sweep down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from blockprune.config import entry_script
from blockprune.errors import ConfigError, DataError
from blockprune.main import train
from blockprune.report import build_table
from helpers.jobs import TINY_CLI as TINY
from helpers.jobs import make_cfg


def _train(args: list[str], tmp_path: Path, flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(entry_script()), *flags, *TINY, f"paths.cache_dir={tmp_path / 'cache'}", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )


def test_bad_input_exits_non_zero_with_the_fix_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = _train(["data.text_column=Headline", f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 1
    log = proc.stdout + proc.stderr
    assert "Headline" in log and "SHC_Valid.csv" in log and "data.text_column" in log
    assert "Traceback" not in log
    assert not (out / "results.json").exists() and not (out / "model").exists()


def test_one_failed_job_does_not_take_the_sweep_down(tmp_path):
    """1 failing job of 7 (the 4th): the other 6 finish with their results and models."""
    sweep = tmp_path / "sweep"
    sparsities = ["0.1", "0.2", "0.3", "1.5", "0.4", "0.5", "0.6"]
    proc = _train(
        ["prune=block", f"prune.sparsity={','.join(sparsities)}", f"hydra.sweep.dir={sweep}"], tmp_path, flags=("-m",)
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # FailedJobsExit's code: not a crash or a kill (137)
    results = [json.loads((sweep / str(i) / "results.json").read_text()) for i in range(7)]
    assert [r["status"] for r in results] == ["completed"] * 3 + ["failed"] + ["completed"] * 3
    assert "prune.sparsity=1.5" in results[3]["error"]
    for i in (0, 1, 2, 4, 5, 6):
        assert (sweep / str(i) / "model" / "model.safetensors").is_file()
        assert results[i]["pruning"]["target_sparsity"] == float(sparsities[i])
    table = build_table([sweep])
    assert list(table["status"]).count("completed") == 6 and list(table["status"]).count("failed") == 1


# --- Early validation: every class of bad config or bad input fails before training, with a
# message naming the key (or file) and what is allowed, and leaves no output behind.


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, e5_dir):
    """Two saved classifiers a user could wrongly name as teacher: other labels; other vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("teachers")
    datamodule = instantiate(make_cfg(out / "probe", []).data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    labels = {"id2label": datamodule.id2label, "label2id": datamodule.label2id}
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    other_labels = BertConfig(vocab_size=len(datamodule.tokenizer), num_labels=3, **small)
    other_vocab = BertConfig(vocab_size=1000, num_labels=datamodule.num_labels, **labels, **small)
    paths = {}
    for name, config in (("other_labels", other_labels), ("other_vocab", other_vocab)):
        BertForSequenceClassification(config).save_pretrained(out / name)
        paths[name] = out / name
    # Same vocabulary size, other tokenizer: two pieces swap ids.
    same_size = BertConfig(vocab_size=len(datamodule.tokenizer), num_labels=datamodule.num_labels, **labels, **small)
    BertForSequenceClassification(same_size).save_pretrained(out / "other_tokenizer")
    datamodule.tokenizer.save_pretrained(out / "other_tokenizer")
    spec = json.loads((out / "other_tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]  # Unigram: [piece, score] by id
    a, b = (next(i for i, (piece, _) in enumerate(vocab) if piece == p) for p in ("▁मुंबई", "▁पुणे"))
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (out / "other_tokenizer" / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    paths["other_tokenizer"] = out / "other_tokenizer"
    return paths


CATALOGUE = {  # case: (overrides, exception, words the message must contain)
    "sparsity outside [0,1)": (["prune=block", "prune.sparsity=1.5"], ConfigError, ["prune.sparsity=1.5", "[0, 1)"]),
    "unknown pruning method": (["prune=block", "prune.method=magnitude"], ConfigError, ["prune.method", "topk"]),
    "block shape not dividing a layer": (
        ["prune=block", "prune.sparsity=0.5", "prune.attention_block=[48,48]"],
        ConfigError,
        ["attention_block", "48"],
    ),
    "teacher with other labels": (
        ["distill=on", "distill.teacher={other_labels}"],
        ConfigError,
        ["distill.teacher", "labels"],
    ),
    "teacher with another tokenizer": (
        ["distill=on", "distill.teacher={other_vocab}"],
        ConfigError,
        ["distill.teacher", "vocabulary", "tokenizer"],
    ),
    "teacher with another tokenizer of the same size": (
        ["distill=on", "distill.teacher={other_tokenizer}"],
        ConfigError,
        ["distill.teacher", "2 pieces have other ids"],
    ),
    "distillation without a teacher": (["distill=on"], ConfigError, ["distill.teacher", "init_from"]),
    "distillation temperature <= 0": (
        ["distill=on", "distill.teacher={other_vocab}", "distill.temperature=0"],
        ConfigError,
        ["distill.temperature=0", "> 0"],
    ),
    "fp16 precision on a CPU": (
        ["trainer.precision=16-mixed"],
        ConfigError,
        ["trainer.precision=16-mixed", "bf16-mixed"],
    ),
    "unknown precision": (["trainer.precision=fp8"], ConfigError, ["trainer.precision=fp8", "Allowed here"]),
    **(
        {}
        if torch.cuda.is_available()
        else {  # a GPU machine runs this job: nothing to refuse
            "GPU accelerator without a GPU": (
                ["trainer.accelerator=gpu"],
                ConfigError,
                ["trainer.accelerator=gpu", "trainer=cpu"],
            ),
        }
    ),
    "missing data file": (["data.file=/nonexistent/news.csv"], DataError, ["/nonexistent/news.csv", "not found"]),
    "missing text column": (["data.text_column=Headline"], DataError, ["Headline", "data.text_column"]),
    "missing init_from folder": (["init_from=/nonexistent/model"], ConfigError, ["init_from=/nonexistent/model"]),
    "max_length beyond the model": (["data.max_length=100000"], ConfigError, ["data.max_length=100000", "512"]),
    "resume=true without a checkpoint": (["resume=true"], ConfigError, ["resume=true", "last.ckpt"]),
    "unknown data-quality policy": (
        ["data.quality.duplicates=maybe"],
        ConfigError,
        ["data.quality.duplicates", "drop"],
    ),
    "negative learning rate": (["module.lr=-1"], ConfigError, ["module.lr=-1", "> 0"]),
    "unsupported benchmark dtype": (["bench.dtype=float8"], ConfigError, ["bench.dtype", "float32"]),
    "unknown serving runtime": (["deploy.runtimes=[onnx,tflite]"], ConfigError, ["tflite", "onnx-int8"]),
    "missing vocabulary corpus": (
        ["vocab.trim=true", "vocab.extra_corpora=[/nonexistent/corpus.csv]"],
        ConfigError,
        ["vocab.extra_corpora", "/nonexistent/corpus.csv"],
    ),
}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_config_fails_before_training_naming_the_key_and_writes_nothing(case, teachers, tmp_path, monkeypatch):
    overrides, error, words = CATALOGUE[case]
    overrides = [o.format(**teachers) for o in overrides]
    out = tmp_path / "run"
    cfg = make_cfg(out, overrides)
    fitted = []
    monkeypatch.setattr(L.Trainer, "fit", lambda *a, **k: fitted.append(1))
    with pytest.raises(error) as info:
        train(cfg)
    for word in words:
        assert word in str(info.value), f"{case}: {word!r} missing from: {info.value}"
    assert not fitted
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if "cache" not in p.parts) if out.exists() else []
    assert not written, f"{case}: left output behind: {written}"


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["prune=magnitude"], ["prune/magnitude", "block", "none"]),  # unknown group option
        (["module.lrr=1e-4"], ["module.lrr"]),  # misspelt key
        (["trainer=tpu"], ["trainer/tpu", "cpu"]),
    ],
)
def test_unknown_options_and_keys_are_refused_by_hydra_listing_what_exists(overrides, words, tmp_path):
    from hydra.errors import HydraException

    with pytest.raises(HydraException) as info:
        make_cfg(tmp_path, overrides)
    for word in words:
        assert word in str(info.value)


def test_precision_a_gpu_cannot_do_is_refused(monkeypatch):
    import torch

    from blockprune.validation import check_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    check_precision("16-mixed", "gpu")
    with pytest.raises(ConfigError, match=r"bf16-mixed cannot run on this GPU \(Tesla V100\)"):
        check_precision("bf16-mixed", "gpu")


@pytest.fixture
def data_server(shc_csv):
    """Serves the SHC file over HTTP on 127.0.0.1 (query strings ignored), so a data URL can carry a token."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(shc_csv.parent))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/{shc_csv.name}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow  # about 80 s on 2 cores
def test_no_token_or_api_key_appears_in_any_file_a_submitit_sweep_writes(tmp_path, data_server, shc_csv):
    """Secrets in every form a user may type -- an override value with spaces, a dict of
    credentials, a token in a data URL's query string, a W&B-shaped key -- and keys in the
    environment: none reaches results.json, data_report.json, checkpoints, CSV/W&B logs, the
    job log, Hydra's saved configs, multirun.yaml or submitit's pickles (all searched as bytes)."""
    import hashlib

    config_token, env_token = "hf_" + "Cfg" * 12, "hf_" + "Env" * 12
    env_key, spaced, cred, url_token = "0123456789abcdef0123456789abcdef01234567", "Spaced" * 4, "Cred" * 6, "Query" * 5
    sweep = tmp_path / "sweep"
    env = {**os.environ, "HF_TOKEN": env_token, "WANDB_API_KEY": env_key, "WANDB_MODE": "offline"}
    sha = hashlib.sha256(shc_csv.read_bytes()).hexdigest()
    proc = subprocess.run(
        [
            sys.executable,
            str(entry_script()),
            "-m",
            *TINY,
            "logger=default",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep}",
            f"+model.hub_token={config_token}",
            f"+model.password='{spaced} {spaced}'",
            f"+model.creds={{user: me, key: {cred}}}",
            f"data.file={{url: '{data_server}?token={url_token}', sha256: {sha}}}",
            f"data.download_dir={tmp_path / 'dl'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [p for p in sweep.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {
        "results.json",
        "data_report.json",
        "config.yaml",
        "overrides.yaml",
        "multirun.yaml",
        "last.ckpt",
        "metrics.csv",
    } <= names
    assert any(n.endswith("_submitted.pkl") for n in names) and any(n.endswith("_result.pkl") for n in names)
    assert any("wandb" in p.parts for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in (config_token, env_token, env_key, spaced, cred, url_token):
            assert secret.encode() not in data, f"{secret[:6]}... found in {path}"
    results = json.loads((sweep / "0" / "results.json").read_text())
    assert results["config"]["model"]["hub_token"] == "***" and results["config"]["model"]["creds"]["key"] == "***"
    assert results["config"]["data"]["file"]["url"] == data_server + "?***"  # the URL stays readable
    assert results["status"] == "completed" and (tmp_path / "dl").is_dir()  # the job did get the real URL


def test_a_failure_record_masks_secrets_in_its_error_and_traceback(tmp_path):
    """write_failure's fields go through write_json, which redacts every JSON artefact."""
    from blockprune.atomic import write_json

    secret = "hf_" + "Err" * 10
    try:
        raise DataError(f"could not download data.file from https://me:pw@host.org/x.csv?token={secret} (HTTP 404)")
    except DataError as err:
        import traceback

        write_json(
            tmp_path / "results.json",
            {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()},
        )
    text = (tmp_path / "results.json").read_text()
    assert secret not in text and "pw@" not in text
    assert "https://***@host.org/x.csv?***" in json.loads(text)["error"]


# --- Atomic outputs and odd inputs


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    import torch

    from blockprune.atomic import AtomicCheckpointIO, remove_stale_temporaries

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    def killed_mid_write(obj, f, *args, **kwargs):
        f.write(before[: len(before) // 2])
        raise KeyboardInterrupt  # what a preemption signal does to the writer

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert io.load_checkpoint(path)["global_step"] == 1
    (path.parent / ".last.ckpt.x1.tmp").mkdir()  # what a SIGKILL mid-write leaves; a resume removes it
    remove_stale_temporaries(path.parent)
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_the_trainer_writes_checkpoints_with_the_atomic_writer(tmp_path):
    from blockprune.atomic import AtomicCheckpointIO
    from blockprune.components import build

    trainer = build(make_cfg(tmp_path, []).trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


ODD_TEXTS = {
    "emoji only": "😀🎉🔥",
    "punctuation only": "!!! ??? ...",
    "whitespace only": " \t  ",
    "mixed Devanagari and Latin": "मुंबई इंडियन्स IPL 2024 अंतिम सामना",
    "mixed Arabic and Devanagari": "مرحبا नमस्ते मित्रांनो",
    "far beyond max_length": "शब्द " * 12000,
    "quoted newline": "पहिली ओळ\nदुसरी ओळ",
    "zero-width joiner": "क्\u200dष राज्य सरकार",
    "Cyrillic (not mojibake)": "Привет мир",
}


def test_odd_inputs_are_trained_on_counted_and_predicted_without_a_crash(tmp_path):
    """A BOM, CRLF line ends, quoted newlines, emoji- or whitespace-only texts, mixed scripts and a
    60,000-character text: the job completes, the quality report counts each kind."""
    import csv
    import io

    from transformers import AutoTokenizer

    from blockprune import load_model
    from blockprune.evaluation import evaluate_texts, predict_texts

    labels = {"sports": "क्रीडा", "politics": "राजकारण", "business": "व्यापार"}
    rows = [(f"बातमी {word} क्रमांक {i} " + "शब्द " * (i % 5), label) for label, word in labels.items() for i in range(24)]
    rows += [(text, list(labels)[i % 3]) for i, text in enumerate(ODD_TEXTS.values())]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([("Text", "Label"), *rows])
    data = tmp_path / "odd.csv"
    data.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))

    cfg = make_cfg(tmp_path / "run", [f"data.file={data}", "trainer.max_epochs=1", "data.max_length=64"])
    results = train(cfg)
    assert results["status"] == "completed"
    (quality,) = results["data"]["quality"].values()
    assert quality["data_lines"] == len(rows)
    assert quality["empty_texts"] == 1 and quality["dropped"]["empty_texts"] == 1
    assert quality["no_word_texts"] == 2
    assert quality["mixed_script_texts"] == 2
    assert quality["long_texts"] == 1
    assert quality["mojibake"] == 0 and quality["rows_out"] == len(rows) - 1
    tokens = results["data"]["tokens"]
    long_split = max(tokens, key=lambda s: tokens[s]["max"])  # the 60,000-character text's split
    assert tokens[long_split]["max"] > 64 and tokens[long_split]["truncated_fraction"] > 0  # truncated, not refused
    model = load_model(results["model_dir"])
    tokenizer = AutoTokenizer.from_pretrained(results["model_dir"])
    texts = [*ODD_TEXTS.values(), ""]
    pred = predict_texts(model, tokenizer, texts, max_length=64)
    assert len(pred) == len(texts) and set(pred) <= set(range(model.config.num_labels))
    other = [(p + 1) % model.config.num_labels for p in pred]
    assert evaluate_texts(model, tokenizer, texts, pred, max_length=64)["test/acc"] == 1.0
    assert evaluate_texts(model, tokenizer, texts, other, max_length=64)["test/acc"] == 0.0


@pytest.mark.parametrize(
    "bad, words",
    [(["module.lr=-1"], "module.lr=-1"), (["hub.push=true", "hub.repo_id=someone/model"], "HF_TOKEN")],
)
def test_a_bad_config_or_hub_push_fails_before_a_teacher_is_fine_tuned(bad, words, tmp_path, monkeypatch):
    """The teacher is the first thing a pruned job on a pretrained model writes: the checks come first."""
    import blockprune.teacher

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    started = []
    monkeypatch.setattr(blockprune.teacher.subprocess, "run", lambda *a, **k: started.append(a))
    cfg = make_cfg(tmp_path / "run", ["teacher.auto=true", "prune.sparsity=0.5", "distill=on", *bad])
    with pytest.raises(ConfigError, match=words):
        train(cfg)
    assert not started and not (tmp_path / "run" / "cache" / "teachers").exists()

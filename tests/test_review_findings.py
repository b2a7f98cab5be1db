"""Findings of the issue-17 review of code added after the trust work: each test failed before its fix."""

from __future__ import annotations

import sys

import pandas as pd
import pytest

SECRET = "SECRETVALUE4242"


def _files_holding(folder, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.fixture
def report_folder(tmp_path, monkeypatch):
    """A study folder holding the plot ``log_to_wandb`` uploads beside the table; W&B kept quiet."""
    pytest.importorskip("wandb")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("WANDB_SILENT", "true")
    plt.figure()
    plt.savefig(tmp_path / "accuracy_vs_speedup.png")
    plt.close("all")
    return tmp_path


def test_the_study_report_wandb_run_does_not_record_a_secret_of_the_command_line(report_folder, monkeypatch):
    """``blockprune table1 ... model.token=...``: W&B stores sys.argv in the report run's metadata."""
    from blockprune.report import log_to_wandb

    monkeypatch.setattr(sys, "argv", ["blockprune", "table1", f"model.token={SECRET}"])
    run_dir = log_to_wandb(pd.DataFrame({"row": ["a"], "accuracy": [0.5]}), report_folder, group="g")
    assert run_dir is not None and list((report_folder / "wandb").glob("offline-run-*"))
    assert _files_holding(report_folder, SECRET) == []
    assert sys.argv[-1] == f"model.token={SECRET}"  # the caller's argv is restored


def test_the_study_report_logs_to_wandb_a_table_whose_rows_were_deployed(report_folder):
    """A study with ``deploy.runtimes`` crashed at its last step: W&B could not type the private
    ``_deployed_points`` lists (found by the SHC 5-fold study on the AVX-512 VNNI CPU)."""
    from blockprune.report import log_to_wandb

    table = pd.DataFrame(
        {
            "row": ["baseline", "50% + KD"],
            "accuracy": [82.15, 82.23],
            "_deployed_points": [[("torch", 1.0, 82.15), ("openvino", 2.4, 82.06)], [("onnx", 2.3, 82.23)]],
            "_predictions": [[1, 2, 3], [1, 2, 2]],
        }
    )
    assert log_to_wandb(table, report_folder, group="g") is not None


@pytest.mark.parametrize(
    "url",
    [
        f"https://host/d/x.csv?sig={SECRET}",  # a signed URL: the query's key is not named like a secret
        f"https://alice:{SECRET}@host/x.csv",  # user-info, which Path() turns into a folder name
    ],
)
def test_the_model_card_names_a_data_url_without_its_query_or_user_info(url):
    from blockprune import hub

    results = {"config": {"data": {"file": {"url": url}}}, "metrics": {"test/acc": 0.5}}
    text = hub.card_text(results, {"card": True, "language": "mr"})
    assert SECRET not in text
    assert "x.csv" in text  # the data is still named


@pytest.fixture(scope="module")
def predict_inputs(tmp_path_factory):
    from helpers.saved_models import compacted, save, tiny_classifier

    root = tmp_path_factory.mktemp("review_predict")
    data = root / "in.csv"
    pd.DataFrame({"Text": ["one headline", "another headline"]}).to_csv(data, index=False)
    return save(compacted(tiny_classifier()), root / "model"), data


def _predict(model, data, out) -> int:
    from blockprune.cli import main as cli

    return cli(["predict", str(model), str(data), "--runtime", "torch", "--no-progress", "--out", str(out)])


def test_predict_out_refuses_an_existing_folder_with_a_clear_error(predict_inputs, tmp_path, capsys):
    out = tmp_path / "preds"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    assert _predict(*predict_inputs, out) == 2
    assert "existing folder" in capsys.readouterr().err
    assert (out / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_predict_out_through_a_symlink_replaces_the_link_not_the_file_it_points_to(predict_inputs, tmp_path):
    mine = tmp_path / "mine.jsonl"
    mine.write_text("the user's own file\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    out.symlink_to(mine)
    assert _predict(*predict_inputs, out) == 0
    assert mine.read_text(encoding="utf-8") == "the user's own file\n"
    assert not out.is_symlink() and len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_a_teacher_trained_on_a_data_url_with_a_token_is_found_again(tmp_path):
    """results.json records the config with the token masked; the teacher's hash must match it."""
    import json

    from omegaconf import OmegaConf

    from blockprune.errors import BlockpruneError
    from blockprune.redact import redacted_container
    from blockprune.teacher import finished_teacher, teacher_key, teacher_spec

    cfg = OmegaConf.create(
        {
            "seed": 1,
            "data": {"file": {"url": f"https://host/x.csv?token={SECRET}", "sha256": None}, "max_length": 64},
            "model": {"net": {"name_or_path": "some/model"}},
            "trainer": {"max_epochs": 1},
            "module": {"lr": 1e-4},
        }
    )
    spec = teacher_spec(cfg)
    teacher_dir = tmp_path / teacher_key(spec)
    (teacher_dir / "model").mkdir(parents=True)
    (teacher_dir / "model" / "config.json").write_text("{}", encoding="utf-8")
    record = {"status": "completed", "config": redacted_container(cfg)}
    (teacher_dir / "results.json").write_text(json.dumps(record), encoding="utf-8")
    assert SECRET not in (teacher_dir / "results.json").read_text(encoding="utf-8")
    assert finished_teacher(teacher_dir, spec) == teacher_dir / "model"
    other = OmegaConf.to_container(cfg)
    other["data"]["file"]["url"] = f"https://host/x.csv?ref=v3&token={SECRET}"
    assert teacher_key(teacher_spec(other)) != teacher_key(spec)  # another data URL: another teacher
    other["data"]["file"]["url"] = f"https://host/x.csv?token={SECRET}"
    other["seed"] = 2
    assert teacher_key(teacher_spec(other)) != teacher_key(spec)  # a defining setting still changes the teacher
    with pytest.raises(BlockpruneError, match="other settings"):
        finished_teacher(teacher_dir, teacher_spec(other))


def test_the_teacher_command_line_carries_no_secret_and_the_subprocess_still_gets_it(tmp_path, monkeypatch):
    import os
    import re

    from blockprune.teacher import teacher_command
    from helpers.jobs import make_cfg

    make_cfg(tmp_path, ["distill=on", f"+module.token={SECRET}", "hydra.job.chdir=false"])
    cmd = teacher_command(tmp_path / "teachers" / "abc")
    assert SECRET not in " ".join(cmd)
    [ref] = [a for a in cmd if a.startswith("+module.token=")]
    name = re.fullmatch(r"\+module\.token=\$\{oc\.env:(\w+)\}", ref).group(1)
    assert os.environ[name] == SECRET  # inherited by subprocess.run
    monkeypatch.delenv(name)


def test_a_study_launches_and_logs_its_jobs_without_the_secrets_of_its_overrides(monkeypatch, caplog):
    import logging
    import os
    import re
    import subprocess

    from blockprune import study

    launched: list[list[str]] = []
    monkeypatch.setattr(
        subprocess, "run", lambda cmd, **kw: launched.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    url = f"data.file.url='https://host/x.csv?token={SECRET}'"  # quoted, as Hydra's grammar needs it
    with caplog.at_level(logging.INFO):
        assert study._run(["-m", "experiment=table1_cpu", f"+module.token={SECRET}", url]) == 0
    [cmd] = launched
    assert SECRET not in " ".join(cmd) and SECRET not in caplog.text
    refs = [re.search(r"\$\{oc\.env:(\w+)\}", a).group(1) for a in cmd if "${oc.env:" in a]
    assert len(refs) == 2 and {os.environ[n] for n in refs} == {SECRET, f"https://host/x.csv?token={SECRET}"}
    for name in refs:
        monkeypatch.delenv(name)


def _foreign_onnx(path) -> bytes:
    """A valid ONNX file another tool wrote (no blockprune producer in its metadata)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "users_own",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path.read_bytes()


def test_export_into_a_model_folder_keeps_an_onnx_file_it_did_not_write(tmp_path, capsys):
    import onnx

    from blockprune.cli import main as cli
    from helpers.saved_models import save, tiny_classifier

    folder = save(tiny_classifier(), tmp_path / "model")
    mine = _foreign_onnx(folder / "model.onnx")
    args = ["export", str(folder), "--runtime", "onnx", "--repeats", "1"]
    assert cli(args) == 2
    assert "not written by blockprune" in capsys.readouterr().err
    assert (folder / "model.onnx").read_bytes() == mine and not (folder / "deploy.json").exists()
    assert cli([*args, "--overwrite"]) == 0
    props = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    assert props["producer"] == "blockprune"
    assert cli(args) == 0  # its own earlier export is replaced without --overwrite


def test_export_keeps_a_deploy_json_it_did_not_write(tmp_path, capsys):
    from blockprune.cli import main as cli
    from helpers.saved_models import save, tiny_classifier

    folder = save(tiny_classifier(), tmp_path / "model")
    (folder / "deploy.json").write_text('{"mine": true}\n', encoding="utf-8")
    args = ["export", str(folder), "--runtime", "onnx", "--repeats", "1"]
    assert cli(args) == 2
    assert "not written by blockprune" in capsys.readouterr().err
    assert (folder / "deploy.json").read_text(encoding="utf-8") == '{"mine": true}\n'
    assert not (folder / "model.onnx").exists()  # refused before any work
    assert cli([*args, "--overwrite"]) == 0 and cli(args) == 0  # then its own deploy.json is replaced


def test_bench_out_never_writes_through_a_folder_named_bench_md(tmp_path, capsys):
    from blockprune.cli import main as cli
    from helpers.saved_models import compacted, save, tiny_classifier

    dense = tiny_classifier()
    base, pruned = save(dense, tmp_path / "dense"), save(compacted(dense), tmp_path / "pruned")
    out = tmp_path / "out"
    (out / "bench.md").mkdir(parents=True)
    (out / "bench.md" / "keep.txt").write_text("mine", encoding="utf-8")
    args = ["bench", str(base), str(pruned), "--batch-sizes", "2", "--seq-lens", "8", "--repeats", "2"]
    assert cli([*args, "--warmup", "1", "--out", str(out)]) == 2
    assert "existing folder" in capsys.readouterr().err
    assert (out / "bench.md" / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_the_cli_masks_secrets_in_its_log_records(caplog):
    import logging

    from blockprune.cli import main as cli

    cli(["report", "/nonexistent/study"])  # any command: the CLI sets up logging and its filter
    record = logging.LogRecord(
        "blockprune", logging.INFO, __file__, 1, "token hf_abcdefghijklmnopqrstuvwxyz123456", (), None
    )
    assert all(f.filter(record) for h in logging.getLogger().handlers for f in h.filters)
    assert "hf_abcdefghijklmnopqrstuvwxyz123456" not in record.getMessage()

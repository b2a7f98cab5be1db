"""No command deletes or replaces a folder it did not write (export, trim-vocab, download cache, model save)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blockprune.atomic import MARKER, MODEL_KIND, OutputExistsError, atomic_path, check_output
from blockprune.cli import main as cli_main
from helpers.toy_vocab import CORPUS, tiny_bert, wordpiece_tokenizer


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("the user's notes\n")
    return path


def survives(folder: Path) -> bool:
    return (folder / "keep.txt").read_text() == "the user's notes\n"


def cli(capsys, *args: str) -> tuple[int, str]:
    """The ``blockprune`` command in this process: (exit code, stderr)."""
    code = cli_main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small saved classifier with its tokenizer (a WordPiece vocabulary of 160 pieces)."""
    folder = tmp_path_factory.mktemp("model") / "tiny"
    tok = wordpiece_tokenizer()
    tiny_bert(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_a_file_output_refuses_a_folder_and_a_folder_output_refuses_one_it_did_not_write(tmp_path):
    folder = user_folder(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="--overwrite") as err:
        with atomic_path(folder) as tmp:
            tmp.write_text("x")
    assert str(folder) in str(err.value) and survives(folder)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        with atomic_path(folder, kind=MODEL_KIND) as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text("{}")
    assert survives(folder) and sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # nothing left beside it


def test_a_folder_output_replaces_its_own_earlier_output_and_overwrite_replaces_anything(tmp_path):
    out = tmp_path / "model"
    for text in ("first", "second"):
        with atomic_path(out, kind=MODEL_KIND) as tmp:
            tmp.mkdir()
            (tmp / "config.json").write_text(text)
    assert (out / "config.json").read_text() == "second" and json.loads((out / MARKER).read_text())[
        "kind"
    ] == MODEL_KIND
    with pytest.raises(OutputExistsError):  # a marker of another kind is not ours to replace
        check_output(out, "other-kind")
    unmarked = tmp_path / "legacy"  # saved before markers: replaced only if the new output rewrites every entry
    unmarked.mkdir()
    (unmarked / "config.json").write_text("old")
    check_output(unmarked, MODEL_KIND, new_entries={"config.json", "model.safetensors"})
    with pytest.raises(OutputExistsError):
        check_output(unmarked, MODEL_KIND, new_entries={"model.safetensors"})
    folder = user_folder(tmp_path / "user")
    with atomic_path(folder, overwrite=True) as tmp:
        tmp.write_text("file")
    assert folder.read_text() == "file"


def test_export_refuses_a_folder_holding_a_user_file(tiny_model_dir, tmp_path, capsys):
    folder = user_folder(tmp_path / "exports")
    code, err = cli(capsys, "export", str(tiny_model_dir), "--onnx", str(folder))
    assert code == 2 and str(folder) in err and "--overwrite" in err
    assert survives(folder)


def test_trim_vocab_refuses_a_folder_holding_a_user_file(tiny_model_dir, tmp_path, capsys):
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("Text,Label\n" + "".join(f"{t.replace(',', '')},a\n" for t in CORPUS))
    folder = user_folder(tmp_path / "models")
    code, err = cli(capsys, "trim-vocab", str(tiny_model_dir), str(folder), "--corpus", str(corpus))
    assert code == 2 and str(folder) in err and "--overwrite" in err
    assert survives(folder) and sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    # its own earlier output is replaced on a second run; --overwrite replaces the user's folder
    mine = tmp_path / "trimmed"
    for _ in range(2):
        assert cli(capsys, "trim-vocab", str(tiny_model_dir), str(mine), "--corpus", str(corpus))[0] == 0
    assert (mine / "vocab_trim.json").is_file()
    code, err = cli(capsys, "trim-vocab", str(tiny_model_dir), str(folder), "--corpus", str(corpus), "--overwrite")
    assert code == 0, err
    assert (folder / "vocab_trim.json").is_file() and not (folder / "keep.txt").exists()


def test_download_cache_never_replaces_a_folder(tmp_path):
    from blockprune.data.download import cache_path, fetch
    from blockprune.errors import DataError

    url = "https://data.example.org/sets/news"  # its cache path is a folder holding another URL's file
    folder = user_folder(cache_path(tmp_path, url))
    with pytest.raises(DataError) as err:
        fetch(url, None, tmp_path, key="data.train_file", progress=False)
    assert str(folder) in str(err.value) and survives(folder)


def test_model_save_refuses_a_folder_it_did_not_write(tmp_path):
    from blockprune.main import train
    from helpers.jobs import make_cfg

    folder = user_folder(tmp_path / "model")  # a job's output folder that already holds a user's "model/"
    cfg = make_cfg(
        tmp_path,
        [
            "trainer.max_epochs=1",
            "data.limit={train: 32, val: 16, test: 16}",
            "bench.enabled=false",
            "callbacks=no_carbon",
        ],
    )
    with pytest.raises(OutputExistsError, match="--overwrite") as err:
        train(cfg)
    assert str(folder) in str(err.value) and survives(folder)

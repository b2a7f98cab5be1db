"""blockprune.leakage: a starting model or teacher that trained on the job's test examples is refused."""

from __future__ import annotations

import json

import pytest

from blockprune.errors import ConfigError
from blockprune.leakage import check_unseen_test, source_job


def _job(folder, tested, data_seed=42):
    """A job folder as blockprune writes it: model/config.json and results.json naming that model."""
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "config.json").write_text("{}")
    record = {
        "model_dir": str(folder / "model"),
        "predictions": {"id": tested},
        "config": {"data": {"seed": data_seed}},
    }
    (folder / "results.json").write_text(json.dumps(record))
    return folder / "model"


def test_a_test_split_inside_the_models_own_test_split_passes(tmp_path):
    model = _job(tmp_path / "job", ["a", "b", "c"])
    check_unseen_test("init_from", model, ["a", "c"], {"a", "b", "c", "d", "e"})


def test_test_examples_the_model_trained_on_are_refused_naming_its_split(tmp_path):
    model = _job(tmp_path / "job", ["a", "b", "c"], data_seed=42)
    with pytest.raises(
        ConfigError, match=r"init_from=\S+ was trained on 2 of this job's 3 test examples.*data\.seed=42"
    ):
        check_unseen_test("init_from", model, ["a", "d", "e"], {"a", "b", "c", "d", "e"})


def test_other_data_or_a_model_no_job_saved_is_not_compared(tmp_path):
    model = _job(tmp_path / "job", ["x", "y"])
    check_unseen_test("distill.teacher", model, ["a", "b"], {"a", "b", "c"})  # no example in common: other data
    (tmp_path / "hub_model").mkdir()
    (tmp_path / "hub_model" / "config.json").write_text("{}")
    assert source_job(tmp_path / "hub_model") is None
    check_unseen_test("init_from", tmp_path / "hub_model", ["a"], {"a"})
    check_unseen_test("init_from", None, ["a"], {"a"})
    moved = _job(tmp_path / "moved", ["a"])
    (tmp_path / "moved" / "results.json").write_text(json.dumps({"model_dir": "/elsewhere/model"}))
    assert source_job(moved) is None  # results.json beside it describes another model

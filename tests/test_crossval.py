"""Cross-validation: folds served by the data module, K fits in one job, pooled metrics by hand."""

from __future__ import annotations

import json

import pytest

from blockprune.data import TextClassificationDataModule
from blockprune.errors import ConfigError
from helpers.jobs import make_cfg

LABELS = {"Crime": 14, "Sports": 12, "Tech": 9}


def rows(counts=LABELS):
    return [(f"खबर {label} {i}" + " शब्द" * (i % 5), label) for label, n in counts.items() for i in range(n)]


@pytest.fixture
def cv_csv(tmp_path):
    import csv

    path = tmp_path / "cv.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("Text", "Label"))
        w.writerows(rows() + rows()[:4])  # 4 duplicates: dropped by the default quality policy
    return path


def module(e5_dir, tmp_path, **kw):
    return TextClassificationDataModule(tokenizer=str(e5_dir), num_workers=0, cache_dir=str(tmp_path / "cache"), **kw)


def test_data_module_serves_each_fold_and_tests_every_example_once(e5_dir, tmp_path, cv_csv):
    tested = []
    for fold in range(3):
        dm = module(e5_dir, tmp_path, file=str(cv_csv), cv_folds=3, cv_fold=fold, split=[0.8, 0.2, 0.0])
        texts = {s: dm.texts(s) for s in ("train", "val", "test")}
        assert not set(texts["train"]) & set(texts["test"]) and not set(texts["val"]) & set(texts["test"])
        assert not set(texts["train"]) & set(texts["val"])
        assert sum(map(len, texts.values())) == sum(LABELS.values())
        assert set(dm.labels("val")) == {0, 1, 2}  # validation from the training folds, stratified
        assert dm.report["cv"] == {"folds": 3, "fold": fold}
        assert len(dm.example_ids("test")) == len(texts["test"])
        tested += dm.example_ids("test")
    assert len(tested) == len(set(tested)) == sum(LABELS.values())


def test_pooled_files_and_limit_test_refused(e5_dir, tmp_path):
    import csv

    paths = {}
    for name, part in (("train", rows()[::2]), ("val", rows()[1::2])):
        paths[name] = tmp_path / f"{name}.csv"
        with paths[name].open("w", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerows([("Text", "Label"), *part])
    dm = module(e5_dir, tmp_path, train_file=str(paths["train"]), val_file=str(paths["val"]), cv_folds=2, cv_fold=1)
    assert len(dm.texts("test")) + len(dm.texts("train")) + len(dm.texts("val")) == sum(LABELS.values())
    with pytest.raises(ConfigError, match="data.limit.test cannot be combined with data.cv_folds"):
        module(e5_dir, tmp_path, file=str(paths["train"]), cv_folds=2, limit={"test": 5})


def test_mahasent_config_reads_the_published_splits(tmp_path, mahasent_dir):
    if not (mahasent_dir / "MahaSent_ST_Test.csv").is_file():
        pytest.skip(f"MahaSent-ST not available at {mahasent_dir}")
    from hydra.utils import instantiate

    cfg = make_cfg(tmp_path, ["data=mahasent_st", "model=e5_small_mr", "data.limit={train: 60, val: 30, test: 30}"])
    dm = instantiate(cfg.data)
    assert dm.label2id == {"-1": 0, "0": 1, "1": 2}
    assert dm.report["split_sizes_before_limit"] == {"train": 12000, "val": 1500, "test": 1500}
    assert dm.report["leakage"] == {"val&train": 0, "test&train": 0, "test&val": 0}


# ----------------------------------------------------------------- K fits in one job
CV_JOB = ["data.limit=null", "bench.enabled=false", "callbacks=no_carbon", "trainer.max_epochs=1", "data.batch_size=16"]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    import csv

    from blockprune.main import train

    tmp = tmp_path_factory.mktemp("cv")
    data = tmp / "cv.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("Text", "Label"), *rows()])
    cfg = make_cfg(tmp / "job", [f"data.file={data}", "data.cv_folds=2", *CV_JOB])
    return tmp, train(cfg)


def test_cv_job_tests_every_example_once_and_pools_by_hand(cv_run):
    import csv

    tmp, results = cv_run
    on_disk = json.loads((tmp / "job" / "results.json").read_text())
    assert on_disk["metrics"] == results["metrics"] and on_disk["cv"]["folds"] == 2
    labels = dict(csv.reader((tmp / "cv.csv").open(encoding="utf-8")))
    label2id = on_disk["folds"] and json.loads((tmp / "job" / "fold_0" / "data_report.json").read_text())["label2id"]
    from blockprune.data.splits import example_ids

    by_id = {i: label2id[labels[t]] for i, t in zip(example_ids(list(labels)[1:]), list(labels)[1:])}
    pred = on_disk["predictions"]
    assert sorted(pred["id"]) == sorted(by_id)  # every example tested exactly once
    assert pred["target"] == [by_id[i] for i in pred["id"]]
    # hand count: the pooled accuracy is the fold accuracies (Lightning's torchmetrics) weighted by fold size
    correct = sum(f["metrics"]["test/acc"] * f["split_sizes"]["test"] for f in on_disk["folds"])
    assert on_disk["metrics"]["test/acc"] == pytest.approx(correct / len(by_id))
    assert on_disk["metrics"]["test/acc"] == pytest.approx(
        sum(p == t for p, t in zip(pred["pred"], pred["target"])) / len(by_id)
    )
    for k, fold in enumerate(on_disk["folds"]):
        sub = json.loads((tmp / "job" / f"fold_{k}" / "results.json").read_text())
        assert (
            sub["data"]["cv"] == {"folds": 2, "fold": k}
            and sub["predictions"]["id"]
            == pred["id"][sum(f["split_sizes"]["test"] for f in on_disk["folds"][:k]) :][: fold["split_sizes"]["test"]]
        )
    assert on_disk["model_dir"] == str(tmp / "job") and (tmp / "job" / "fold_1" / "model").is_dir()


@pytest.mark.slow
def test_pruned_cv_job_starts_each_fold_from_the_baselines_fold(cv_run, tmp_path):
    from blockprune.main import train

    tmp, base = cv_run
    cfg = make_cfg(
        tmp_path,
        [
            f"data.file={tmp / 'cv.csv'}",
            "data.cv_folds=2",
            *CV_JOB,
            f"init_from={base['model_dir']}",
            "prune=block",
            "prune.sparsity=0.5",
            "prune.attention_block=head",
            "distill=on",
        ],
    )
    results = train(cfg)
    for k in range(2):
        sub = json.loads((tmp_path / f"fold_{k}" / "results.json").read_text())
        assert sub["config"]["init_from"] == str(tmp / "job" / f"fold_{k}" / "model")
        assert sub["config"]["distill"]["teacher"] == sub["config"]["init_from"]
    assert sorted(results["predictions"]["id"]) == sorted(base["predictions"]["id"])  # same folds: paired
    assert results["pruning"]["target_sparsity"] == 0.5 and "metrics_compacted" not in results


@pytest.mark.slow
def test_tiny_study_with_cv_and_two_seeds_reports_paired_intervals(tmp_path):
    import csv

    from blockprune.report import build_table
    from blockprune.study import run_study

    data = tmp_path / "cv.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("Text", "Label"), *rows()])
    out = tmp_path / "study"
    code = run_study(
        "table1_tiny",
        out,
        [
            f"data.file={data}",
            "data.limit=null",
            "data.cv_folds=2",
            "study.seeds=[1,2]",
            "study.sparsities=[0.5]",
            "study.distill=[on]",
            "callbacks=no_carbon",
            "trainer.max_epochs=1",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
    )
    assert code == 0
    for seed in (1, 2):
        assert (out / f"seed_{seed}" / "baseline" / "fold_1" / "model").is_dir()
    table = build_table([out]).set_index("row")
    assert list(table.index) == ["baseline", "50% + KD"] and (table["seeds"] == 2).all()
    row = table.loc["50% + KD"]
    assert row["test_examples"] == sum(LABELS.values())  # CV: every example, paired by id
    assert row["diff_acc_low"] <= row["diff_acc"] <= row["diff_acc_high"] and 0 <= row["p_mcnemar"] <= 1
    assert row["acc_low"] <= row["accuracy"] <= row["acc_high"] and row["accuracy_std"] >= 0
    md = (out / "table1.md").read_text()
    assert md.count("\n| ") == 2 and " ± " in md and "McNemar p" in md and "lower bound is at least -0.5" in md


@pytest.mark.parametrize("folds", [1, "5", 2.5])
def test_bad_fold_count_is_a_config_error_before_any_fit(tmp_path, folds):
    from blockprune.crossval import cross_validate

    cfg = make_cfg(tmp_path, [f"data.cv_folds={folds!r}" if isinstance(folds, str) else f"data.cv_folds={folds}"])
    with pytest.raises(ConfigError, match="data.cv_folds: must be an integer >= 2"):
        cross_validate(cfg, fit=lambda c: pytest.fail("no fit may run"))


@pytest.mark.parametrize(("n", "world"), [(7, 3), (8, 2), (5, 4)])
def test_ddp_test_predictions_merge_back_into_dataset_order(n, world):
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    from blockprune.module import merge_rank_shares

    preds = [10 + i for i in range(n)]
    shares = [
        [preds[i] for i in UnrepeatedDistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)]
        for r in range(world)
    ]
    assert merge_rank_shares(shares) == preds

"""split_records and check_splits: stratified, seeded, grouped by text; labels and leakage checked."""

from __future__ import annotations

import pandas as pd
import pytest

from blockprune.data import check_splits, split_records
from blockprune.data.splits import assign_folds, cv_split, example_ids
from blockprune.errors import ConfigError, DataError


def frame(rows):
    return pd.DataFrame([(t, lab, i + 2) for i, (t, lab) in enumerate(rows)], columns=["text", "label", "row"])


COUNTS = {"A": 50, "B": 30, "C": 21, "D": 7}


def test_stratified_within_one(balanced_rows):
    df = frame(balanced_rows(COUNTS))
    out = split_records(df, (0.8, 0.1, 0.1), seed=1)
    assert sum(len(v) for v in out.values()) == len(df)
    for name, f in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
        got = out[name]["label"].value_counts()
        for label, n in COUNTS.items():
            assert abs(got.get(label, 0) - n * f) <= 1, (name, label)
    assert out["train"]["row"].is_monotonic_increasing


def test_deterministic_and_order_independent(balanced_rows):
    df = frame(balanced_rows(COUNTS))
    a = split_records(df, seed=7)
    b = split_records(df.sample(frac=1, random_state=3), seed=7)
    c = split_records(df, seed=8)
    for s in a:
        assert a[s]["text"].tolist() == b[s]["text"].tolist()
    assert a["test"]["text"].tolist() != c["test"]["text"].tolist()


def test_no_text_in_two_splits(balanced_rows):
    rows = balanced_rows({"A": 20, "B": 20})
    df = frame(rows + rows[:10] + rows[25:30])  # duplicates: grouped, never split apart
    out = split_records(df, seed=0)
    seen = [set(out[s]["text"]) for s in out]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(v) for v in out.values()) == len(df)


def test_class_too_small(balanced_rows):
    df = frame(balanced_rows({"A": 20, "Rare": 2}))
    with pytest.raises(DataError, match=r"label 'Rare' has 2 distinct text"):
        split_records(df, source="x.csv")
    assert len(split_records(df, (0.9, 0.1, 0.0))["test"]) == 0  # two splits: enough


@pytest.mark.parametrize("bad", [(0.8, 0.1), (0.8, 0.3, 0.1), (0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions(bad, balanced_rows):
    with pytest.raises(ConfigError, match="data.split"):
        split_records(frame(balanced_rows({"A": 10})), bad)


def test_label_missing_from_train():
    splits = {
        "train": frame([("a", "A"), ("b", "B")]),
        "val": frame([("c", "A")]),
        "test": frame([("d", "A"), ("e", "Z")]),
    }
    names = {"train": "tr.csv", "val": "va.csv", "test": "te.csv"}
    with pytest.raises(DataError) as err:
        check_splits(splits, names)
    assert "te.csv" in str(err.value) and "'Z'" in str(err.value) and "line 3" in str(err.value)


def test_leakage_policies():
    splits = {
        "train": frame([("a", "A"), ("b", "B")]),
        "val": frame([("a", "A"), ("c", "B")]),
        "test": frame([("b", "B"), ("c", "B"), ("d", "A")]),
    }
    names = {"train": "tr.csv", "val": "va.csv", "test": "te.csv"}
    out, counts = check_splits(splits, names, "drop")
    assert counts == {"val&train": 1, "test&train": 1, "test&val": 1}
    assert out["val"]["text"].tolist() == ["c"] and out["test"]["text"].tolist() == ["d"]
    out, counts = check_splits(splits, names, "keep")
    assert len(out["test"]) == 3
    with pytest.raises(DataError, match=r"va.csv: 1 row\(s\).*tr.csv.*cross_split_leakage"):
        check_splits(splits, names, "fail")


# ----------------------------------------------------------------- cross-validation folds

CV_COUNTS = {"A": 23, "B": 17, "C": 9, "D": 5}


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_stratified_grouped_and_balanced(balanced_rows, k):
    rows = balanced_rows(CV_COUNTS)
    df = frame(rows + rows[:6] + rows[30:33])  # duplicate texts: always in one fold
    folds = assign_folds(df, k, seed=3)
    assert set(folds) == set(range(k))
    assert df.assign(f=folds).groupby("text")["f"].nunique().max() == 1
    distinct = df.drop_duplicates("text").assign(f=assign_folds(df.drop_duplicates("text"), k, seed=3))
    sizes = distinct["f"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    for label, n in CV_COUNTS.items():
        per_fold = distinct[distinct["label"] == label]["f"].value_counts().reindex(range(k), fill_value=0)
        assert (abs(per_fold - n / k) < 1).all(), (label, per_fold.tolist())


def test_every_example_tested_once_and_val_from_training_folds(balanced_rows):
    df = frame(balanced_rows(CV_COUNTS))
    tested = []
    for fold in range(4):
        out = cv_split(df, 4, fold, val_fraction=0.2, seed=9)
        texts = [set(out[s]["text"]) for s in ("train", "val", "test")]
        assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
        assert sum(len(t) for t in texts) == len(df)
        assert set(out["val"]["label"]) == set(CV_COUNTS)  # stratified validation
        assert abs(len(out["val"]) - 0.2 * (len(df) - len(out["test"]))) <= len(CV_COUNTS)
        assert out["test"]["row"].is_monotonic_increasing
        tested += out["test"]["text"].tolist()
    assert sorted(tested) == sorted(df["text"])


def test_same_folds_whatever_the_row_order_and_only_seed_changes_them(balanced_rows):
    df = frame(balanced_rows(CV_COUNTS))
    shuffled = df.sample(frac=1, random_state=1)
    a = dict(zip(df["text"], assign_folds(df, 5, seed=42)))
    b = dict(zip(shuffled["text"], assign_folds(shuffled, 5, seed=42)))
    c = dict(zip(df["text"], assign_folds(df, 5, seed=43)))
    assert a == b and a != c


def test_cv_errors(balanced_rows):
    df = frame(balanced_rows({"A": 10, "Rare": 2}))
    with pytest.raises(ConfigError, match="data.cv_folds"):
        assign_folds(df, 1)
    with pytest.raises(ConfigError, match="data.cv_fold"):
        cv_split(df, 2, 2, 0.1)
    with pytest.raises(DataError, match=r"label 'Rare' has too few distinct texts outside CV fold"):
        cv_split(df, 2, 0, 0.1, source="x.csv")


def test_example_ids_stable_and_unique():
    ids = example_ids(["a", "b", "a"])
    assert ids[0] != ids[1] and ids[2] == ids[0] + "#2"
    assert example_ids(["b"]) == [ids[1]]

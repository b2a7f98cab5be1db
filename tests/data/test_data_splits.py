"""split_records and check_splits: stratified, seeded, grouped by text; labels and leakage checked."""

from __future__ import annotations

import pandas as pd
import pytest

from blockprune.data import check_splits, split_records
from blockprune.errors import ConfigError, DataError


def frame(rows):
    return pd.DataFrame([(t, l, i + 2) for i, (t, l) in enumerate(rows)], columns=["text", "label", "row"])


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

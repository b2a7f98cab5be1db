"""clean_records: exact defect counts on a crafted file, and every policy."""

from __future__ import annotations

import json

import pytest

from blockprune.data import clean_records, read_records, repair_mojibake
from blockprune.data.quality import is_mojibake
from blockprune.errors import ConfigError, DataError

SCHOOL = "शाळा सुरू"
MOJI = SCHOOL.encode("utf-8").decode("cp866")  # 'рд╢рд╛рд│рд╛ ...'

ROWS = [
    ("नमस्कार जग", "A"),  # line 2
    ("नमस्कार जग", "A"),  # line 3: exact duplicate
    ("Text", "Label"),  # line 4: repeated header
    ("   ", "B"),  # line 5: whitespace-only text
    ("पाऊस आला", ""),  # line 6: missing label
    (MOJI, "B"),  # line 7: mojibake
    (SCHOOL, "B"),  # line 8: duplicates line 7 once repaired
    ("दोन लेबल", "A"),  # line 9: conflicting labels
    ("दोन लेबल", "B"),  # line 10
    ("क" * 50, "C"),  # line 11: long (threshold 40 below)
    ("Привет мир", "C"),  # line 12: real Cyrillic, not mojibake
    ("ok text", "A"),  # line 13
]


@pytest.fixture
def crafted(write_rows):
    path = write_rows("crafted.csv", ROWS)
    return path, read_records(path)


def clean(crafted, **policy):
    path, df = crafted
    return clean_records(df, {"long_text_chars": 40, **policy}, str(path))


def test_mojibake_detection_and_repair():
    assert MOJI.startswith("рд")
    assert repair_mojibake(MOJI) == SCHOOL and is_mojibake(MOJI)
    assert repair_mojibake("Привет мир") == "Привет мир"
    assert repair_mojibake(SCHOOL) == SCHOOL and repair_mojibake("plain") == "plain"
    assert repair_mojibake(MOJI + " 😀") == SCHOOL + " 😀"  # a character cp866 cannot encode


def test_report_counts_with_defaults(crafted):
    out, rep = clean(crafted)
    d = rep.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert (d["data_lines"], d["header_rows"], d["empty_texts"], d["missing_labels"], d["mojibake"]) == (12, 1, 1, 1, 1)
    assert d["duplicate_texts"] == 2  # raw, exact: नमस्कार जग and दोन लेबल
    assert d["duplicate_rows"] == 3 and d["duplicated_distinct_texts"] == 3  # after repair: + शाळा सुरू
    assert d["conflicting_label_texts"] == 1 and d["conflicting_label_rows"] == 2
    assert d["long_texts"] == 1
    assert d["dropped"] == {
        "header_rows": 1,
        "empty_texts": 1,
        "missing_labels": 1,
        "conflicting_labels": 2,
        "duplicates": 2,
    }
    assert d["repaired"] == {"mojibake": 1}
    assert d["examples"]["header_rows"] == [4] and d["examples"]["mojibake"] == [7]
    assert d["examples"]["conflicting_label_texts"] == [9, 10]
    assert d["rows_out"] == 5 and d["label_counts"] == {"A": 2, "B": 1, "C": 2}
    assert out["text"].tolist() == ["नमस्कार जग", SCHOOL, "क" * 50, "Привет мир", "ok text"]
    assert out["row"].tolist() == [2, 7, 11, 12, 13]
    assert "crafted.csv" in rep.summary()


def test_mojibake_drop_and_keep(crafted):
    out, rep = clean(crafted, mojibake="drop")
    assert rep.dropped["mojibake"] == 1 and MOJI not in out["text"].tolist() and SCHOOL in out["text"].tolist()
    out, rep = clean(crafted, mojibake="keep")
    assert MOJI in out["text"].tolist() and rep.mojibake == 1 and "mojibake" not in rep.dropped


def test_conflicts_keep_and_repair(crafted, write_rows):
    out, _ = clean(crafted, conflicting_labels="keep")
    assert sorted(out.loc[out["text"] == "दोन लेबल", "label"]) == ["A", "B"]
    path = write_rows("maj.csv", [("x", "A"), ("x", "A"), ("x", "B"), ("y", "A"), ("y", "B"), ("z", "C")])
    out, rep = clean_records(read_records(path), {"conflicting_labels": "repair"}, str(path))
    assert out[["text", "label"]].values.tolist() == [["x", "A"], ["z", "C"]]  # majority kept, tie dropped
    assert rep.conflicting_label_texts == 2 and rep.dropped["conflicting_labels"] == 3


def test_duplicates_keep(crafted):
    out, rep = clean(crafted, duplicates="keep")
    assert out["text"].tolist().count("नमस्कार जग") == 2 and "duplicates" not in rep.dropped


@pytest.mark.parametrize(
    "key, line",
    [
        ("header_rows", 4),
        ("empty_texts", 5),
        ("missing_labels", 6),
        ("mojibake", 7),
        ("conflicting_labels", 9),
        ("duplicates", 3),
    ],
)
def test_fail_policies(crafted, key, line):
    with pytest.raises(DataError) as err:
        clean(crafted, **{key: "fail"})
    msg = str(err.value)
    assert "crafted.csv" in msg and f"data.quality.{key}" in msg and str(line) in msg


def test_bad_policy_is_config_error(crafted):
    with pytest.raises(ConfigError, match="data.quality.duplicate"):
        clean(crafted, duplicate="drop")
    with pytest.raises(ConfigError, match="data.quality.header_rows"):
        clean(crafted, header_rows="repair")


def test_nothing_left(write_rows):
    path = write_rows("none.csv", [("", "A"), ("x", "")])
    with pytest.raises(DataError, match="none.csv: nothing left after cleaning"):
        clean_records(read_records(path), None, str(path))


def test_real_shc_counts(shc_path):
    """The README's measures, and what the default policies keep."""
    df = read_records(shc_path)
    out, rep = clean_records(df, None, str(shc_path))
    assert len(df) == 2761
    assert rep.header_rows == 11
    assert rep.duplicate_texts == 367  # extra copies among all data lines, as read
    assert rep.conflicting_label_texts == 7
    assert rep.mojibake == 146
    assert rep.duplicate_rows == 357 and rep.duplicated_distinct_texts == 56  # real rows, after repair
    assert rep.conflicting_label_rows == 38
    assert len(out) == rep.rows_out == 2386 and len(rep.label_counts) == 12
    assert out["text"].is_unique

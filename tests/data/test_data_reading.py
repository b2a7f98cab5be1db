"""read_records: formats, encodings, line numbers and every bad-input error."""

from __future__ import annotations

import pytest

from blockprune.data import read_records
from blockprune.errors import DataError


def test_csv_bom_crlf_quoted_newline(write):
    path = write("a.csv", '\ufeffText,Label\r\n"line one\r\nline two",A\r\nनमस्कार,B\r\n\r\n"x, ""q""",C\r\n')
    df = read_records(path)
    assert list(df.columns) == ["text", "label", "row"]
    assert df["text"].tolist() == ["line one\r\nline two", "नमस्कार", 'x, "q"']
    assert df["label"].tolist() == ["A", "B", "C"]
    assert df["row"].tolist() == [2, 4, 6]  # the quoted newline spans lines 2-3; line 5 is blank


def test_tsv_and_custom_columns(write):
    path = write("a.tsv", "id\tsentence\tcat\n1\tपहिला\tX\n2\tदुसरा, with comma\tY\n")
    df = read_records(path, text_column="sentence", label_column="cat")
    assert df["text"].tolist() == ["पहिला", "दुसरा, with comma"]
    assert df["row"].tolist() == [2, 3]


def test_jsonl(write):
    path = write("a.jsonl", '\ufeff{"Text": "एक", "Label": "A"}\r\n\r\n{"Text": "दोन", "Label": 3}\n{"Text": null, "Label": "B"}\n')
    df = read_records(path)
    assert df["text"].tolist() == ["एक", "दोन", ""]
    assert df["label"].tolist() == ["A", "3", "B"]
    assert df["row"].tolist() == [1, 3, 4]


def test_missing_fields_become_empty(write):
    df = read_records(write("a.csv", "Text,Label\nonly text\n"))
    assert df["label"].tolist() == [""]


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("a.txt", "Text,Label\nx,y\n", ["a.txt", "unsupported", ".csv"]),
        ("empty.csv", "", ["empty.csv", "empty"]),
        ("blank.csv", "\n  \n", ["blank.csv", "empty"]),
        ("head.csv", "Text,Label\n", ["head.csv", "no data rows"]),
        ("bad.csv", b"Text,Label\nok,A\ncaf\xe9,B\n", ["bad.csv", "line 3", "byte 19", "UTF-8"]),
        ("col.csv", "text,Label\nx,A\n", ["col.csv", "'Text'", "['text', 'Label']", "data.text_column", "did you mean"]),
        ("lab.tsv", "Text\tCategory\nx\tA\n", ["lab.tsv", "'Label'", "data.label_column"]),
        ("wide.csv", "Text,Label\na,b,c\n", ["wide.csv", "line 2", "quote"]),
        ("bad.jsonl", '{"Text": "a", "Label": "A"}\n{"Text": "b", Label: 1}\n', ["bad.jsonl", "line 2", "JSON"]),
        ("list.jsonl", '["a", "A"]\n', ["list.jsonl", "line 1", "object"]),
        ("col.jsonl", '{"sentence": "a", "Label": "A"}\n', ["col.jsonl", "data.text_column", "sentence"]),
    ],
)
def test_bad_inputs(write, name, content, expected):
    path = write(name, content)
    with pytest.raises(DataError) as err:
        read_records(path)
    for part in expected:
        assert part in str(err.value), (part, str(err.value))
    assert "Fix" in str(err.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_records(tmp_path / "nope.csv")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataError, match=r"d\.csv: is a directory"):
        read_records(tmp_path / "d.csv")

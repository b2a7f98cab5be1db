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
    path = write(
        "a.jsonl",
        '\ufeff{"Text": "एक", "Label": "A"}\r\n\r\n{"Text": "दोन", "Label": 3}\n{"Text": null, "Label": "B"}\n',
    )
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
        (
            "col.csv",
            "text,Label\nx,A\n",
            ["col.csv", "'Text'", "['text', 'Label']", "data.text_column", "did you mean"],
        ),
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


# --- Input limits: bounded messages, parser errors as DataError with the line, JSONL split on "\n" only


def test_a_header_with_a_million_columns_gives_a_short_error(write):
    path = write("wide.csv", ",".join(f"column_{i}" for i in range(1_000_000)) + "\nx\n")
    with pytest.raises(DataError) as err:
        read_records(path)
    msg = str(err.value)
    assert len(msg) < 2000 and str(path) in msg and "data.text_column" in msg and "1000000" in msg


def test_jsonl_lines_are_split_on_newline_only(write):
    texts = ["एक\u2028दोन", "three\u0085four", "five\u2029six"]
    content = "".join(f'{{"Text": "{t}", "Label": "a"}}\n' for t in texts)
    df = read_records(write("odd.jsonl", content))
    assert df["text"].tolist() == texts and df["row"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "line, words",
    [
        ('{"Text": ' + "[" * 100_000 + "]" * 100_000 + ', "Label": "a"}', "RecursionError"),
        ('{"Text": "x", "Label": ' + "9" * 5000 + "}", "ValueError"),
    ],
)
def test_jsonl_parser_failures_are_data_errors_with_the_line(write, line, words):
    path = write("deep.jsonl", '{"Text": "ok", "Label": "a"}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        read_records(path)
    msg = str(err.value)
    assert f"{path}: line 2:" in msg and words in msg and len(msg) < 500


def test_a_csv_field_over_the_parser_limit_is_a_data_error_with_the_line(write):
    path = write("big.csv", 'Text,Label\nshort,a\n"' + "x" * 200_000 + '",b\n')
    with pytest.raises(DataError, match=r"line 3: cannot parse the record \(field larger than field limit"):
        read_records(path)


def test_texts_are_cut_to_the_character_cap_before_tokenising(e5_path):
    from transformers import AutoTokenizer

    from blockprune.data.tokens import char_cap, encode_split

    real = AutoTokenizer.from_pretrained(e5_path)
    seen: list[int] = []

    class Recording:  # the real tokenizer, recording the longest text it is given
        def __call__(self, texts, **kw):
            seen.append(max(len(t) for t in texts))
            return real(texts, **kw)

    huge = "शब्द " * 1_000_000  # 5M characters
    out = encode_split(Recording(), ["लहान वाक्य", huge], max_length=16)
    assert max(seen) == char_cap(16) < len(huge)
    assert out["offsets"].tolist()[-1] == len(real("लहान वाक्य")["input_ids"]) + 16  # the huge text: truncated to 16
    assert int(out["full_lengths"][1]) > 16  # still counted as truncated

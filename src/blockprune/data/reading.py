"""Read labelled text files (.csv, .tsv, .jsonl) into one table with file line numbers.

Every later error message names the file line of the offending record, so the reader keeps
the 1-based line on which each record starts (quoted newlines counted) in a ``row`` column.
Parsing uses the standard ``csv``/``json`` modules rather than ``pandas.read_csv`` because
only they tell us where each record starts in the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from blockprune.errors import DataError

SUFFIXES = (".csv", ".tsv", ".jsonl")
_BOM = b"\xef\xbb\xbf"


def read_records(path: str | os.PathLike, text_column: str = "Text", label_column: str = "Label") -> pd.DataFrame:
    """Return a DataFrame with columns ``text``, ``label`` (str) and ``row`` (1-based file line).

    Nothing is cleaned here: repeated header lines, empty texts and the like are kept as
    records so that ``quality.clean_records`` can count and report them. A missing value
    becomes ``""``. ``df.attrs["header"]`` holds ``(text_column, label_column)`` so the
    cleaner can recognise header lines repeated inside the data.
    """
    file = Path(path)
    name = str(file)
    if not file.exists():
        raise DataError(f"{name}: file not found. Fix: check the path (data.file / data.train_file ...).")
    if file.is_dir():
        raise DataError(f"{name}: is a directory, not a data file. Fix: point to a .csv, .tsv or .jsonl file.")
    suffix = file.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{name}: unsupported file type {suffix or '(no suffix)'!r}. "
            f"Fix: use one of {', '.join(SUFFIXES)} (the suffix selects the parser)."
        )
    text = _decode(file.read_bytes(), name)
    if not text.strip():
        raise DataError(f"{name}: file is empty. Fix: give a file with a header line and at least one row.")
    if suffix == ".jsonl":
        records = list(_jsonl_records(text, name, text_column, label_column))
    else:
        records = list(_delimited_records(text, name, "\t" if suffix == ".tsv" else ",", text_column, label_column))
    if not records:
        raise DataError(f"{name}: no data rows, only a header. Fix: give a file with at least one row.")
    df = pd.DataFrame(records, columns=["text", "label", "row"])
    df["row"] = df["row"].astype("int64")
    df.attrs["header"] = (text_column, label_column)
    df.attrs["source"] = name
    return df


def read_texts(path: str | os.PathLike, text_column: str = "Text") -> list[str]:
    """The non-blank texts of one file, for a corpus that needs no labels (vocabulary trimming).

    .csv/.tsv/.jsonl go through :func:`read_records` (same checks, same errors; the text column
    stands in for the label column); header lines repeated inside the data are dropped. A .txt
    file is one text per line.
    """
    file = Path(path)
    if file.suffix.lower() == ".txt" and file.is_file():
        return [line for line in _decode(file.read_bytes(), str(file)).splitlines() if line.strip()]
    texts = read_records(file, text_column, label_column=text_column)["text"].tolist()
    return [t for t in texts if t.strip() and t.strip() != text_column]


def _decode(data: bytes, name: str) -> str:
    """Strict UTF-8 (BOM removed); an error names the line and byte offset of the first bad byte."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{name}: line {line}: byte {err.start} ({data[err.start : err.start + 1].hex()}) is not valid UTF-8. "
            "Fix: re-save the file as UTF-8 (e.g. 'iconv -f <old-encoding> -t utf-8' or 'Save as... UTF-8')."
        ) from None


#: At most this many column names (each cut to 40 characters) in a message: a header with a
#: million columns still gives a short error (it is also copied into results.json).
_SHOWN_COLUMNS = 20


def _shown(names: list[str]) -> str:
    cut = [n if len(n) <= 40 else n[:37] + "..." for n in names[:_SHOWN_COLUMNS]]
    more = f" ... and {len(names) - _SHOWN_COLUMNS} more" if len(names) > _SHOWN_COLUMNS else ""
    return f"{cut}{more}"


def _column_index(found: list[str], wanted: str, key: str, name: str) -> int:
    """Index of ``wanted`` among the header names; a miss lists (a bounded part of) what is there and the config key."""
    if wanted in found:
        return found.index(wanted)
    hint = [c for c in found if c.strip().lower() == wanted.strip().lower()]
    maybe = f" (did you mean {hint[0]!r:.60}?)" if hint else ""
    raise DataError(
        f"{name}: no column {wanted!r:.60}{maybe}; columns found ({len(found)}): {_shown(found)}. "
        f"Fix: set {key} to the name of the column to use."
    )


def _delimited_records(
    text: str, name: str, delimiter: str, text_column: str, label_column: str
) -> Iterator[tuple[str, str, int]]:
    """CSV/TSV records as (text, label, first line); blank lines are skipped as pandas does."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        while not header:  # leading blank lines
            header = next(reader)
    except StopIteration:
        return
    except csv.Error as err:
        raise DataError(
            f"{name}: line {reader.line_num}: cannot parse the header ({err}). Fix: check the quoting."
        ) from None
    header = [h.strip() for h in header]
    ti = _column_index(header, text_column, "data.text_column", name)
    li = _column_index(header, label_column, "data.label_column", name)
    width = len(header)
    end = reader.line_num
    while True:
        start = end + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(
                f"{name}: line {start}: cannot parse the record ({err}). "
                "Fix: quote fields that contain the delimiter, quotes or newlines."
            ) from None
        end = reader.line_num
        if not fields or fields == [""]:
            continue
        if len(fields) > width:
            raise DataError(
                f"{name}: line {start}: {len(fields)} fields but the header has {width}. "
                'Fix: quote texts that contain the delimiter (e.g. "a, b").'
            )
        yield (
            fields[ti] if ti < len(fields) else "",
            fields[li].strip() if li < len(fields) else "",
            start,
        )


def _jsonl_records(text: str, name: str, text_column: str, label_column: str) -> Iterator[tuple[str, str, int]]:
    """JSON Lines records as (text, label, line); a column absent from every object is an error."""
    seen: set[str] = set()
    found_text = found_label = False
    records: list[tuple[str, str, int]] = []
    # JSON Lines are separated by "\n" only: str.splitlines() would also split inside a text at
    # U+2028, U+0085 and the like, which JSON allows unescaped in strings.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{name}: line {number}: not valid JSON ({err.msg} at column {err.colno}). "
                "Fix: write one JSON object per line."
            ) from None
        except (RecursionError, ValueError) as err:  # nesting too deep; an integer over Python's digit limit
            raise DataError(
                f"{name}: line {number}: cannot read this JSON ({type(err).__name__}: {str(err)[:120]}). "
                "Fix: write one flat JSON object per line with text and label as strings."
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f"{name}: line {number}: expected a JSON object, got {type(obj).__name__}. "
                'Fix: write one JSON object per line, e.g. {"Text": "...", "Label": "..."}.'
            )
        seen.update(obj)
        found_text |= text_column in obj
        found_label |= label_column in obj
        records.append((_as_text(obj.get(text_column)), _as_text(obj.get(label_column)).strip(), number))
    if records:
        if not found_text:
            _column_index(sorted(seen), text_column, "data.text_column", name)
        if not found_label:
            _column_index(sorted(seen), label_column, "data.label_column", name)
    yield from records


def _as_text(value: Any) -> str:
    """JSON values as strings (labels may be numbers); null becomes ``""`` (missing)."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

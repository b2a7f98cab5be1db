"""Serving: label and score for every text of a file or of stdin, on the folder's fastest runtime.

Input is read with the training data reader (``blockprune.data.reading``), so a bad file gets
the same messages (file, line, fix) as in training; no label column is needed. From stdin:
JSON Lines when the first character is ``{``, else one text per line (``--format`` decides
otherwise). Output rows keep the input order and carry the input's line number (``row``).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from blockprune.data.reading import SUFFIXES, read_records
from blockprune.deploy.inference import max_length_of, predict_logits, softmax
from blockprune.deploy.manifest import serving_runtime
from blockprune.deploy.runtimes import open_runtime
from blockprune.errors import DataError

FORMATS = ("csv", "tsv", "jsonl", "lines")


def read_texts(
    source: str, text_column: str = "Text", fmt: str | None = None, stdin: TextIO | None = None
) -> tuple[list[str], list[int]]:
    """(texts, 1-based input lines) from a CSV/TSV/JSONL file, or from stdin when ``source`` is ``-``."""
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"--format {fmt!r} is not supported; use one of {list(FORMATS)}.")
    if source != "-":
        path = Path(source)
        if fmt not in (None, path.suffix.lower().lstrip(".")) and path.is_file():
            raise DataError(
                f"{path}: --format {fmt} does not match the suffix {path.suffix!r}; the suffix selects the parser."
            )
        if fmt == "lines" or path.suffix.lower() == ".txt":
            return _lines(_read_utf8(path.read_bytes(), str(path)), str(path))
        return _records(path, text_column)
    data = (stdin if stdin is not None else sys.stdin.buffer).read()
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    text = _read_utf8(raw, "<stdin>")
    if fmt is None:
        fmt = "jsonl" if text.lstrip().startswith("{") else "lines"
    if fmt == "lines":
        return _lines(text, "<stdin>")
    with tempfile.TemporaryDirectory(prefix="blockprune-stdin-") as tmp:
        path = Path(tmp) / f"stdin.{fmt}"
        path.write_bytes(raw)
        try:
            return _records(path, text_column)
        except DataError as err:
            raise DataError(str(err).replace(str(path), "<stdin>")) from None


def _read_utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{name}: line {line}: byte {err.start} is not valid UTF-8. Fix: send UTF-8 text.") from None


def _lines(text: str, name: str) -> tuple[list[str], list[int]]:
    pairs = [(line, i) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not pairs:
        raise DataError(f"{name}: no text. Fix: give one text per line, or JSON Lines with a text field.")
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _records(path: Path, text_column: str) -> tuple[list[str], list[int]]:
    if path.suffix.lower() not in SUFFIXES and path.exists() and not path.is_dir():
        raise DataError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}. Fix: use .csv, .tsv, .jsonl or .txt."
        )
    # The reader wants a label column too; naming the text column twice means "no label needed".
    try:
        df = read_records(path, text_column=text_column, label_column=text_column)
    except DataError as err:  # the reader names training's config key; here it is an option
        raise DataError(str(err).replace("data.text_column", "--text-column")) from None
    return df["text"].tolist(), df["row"].astype(int).tolist()


def predict_texts(
    model_dir: str | os.PathLike,
    texts: Sequence[str],
    *,
    runtime: str | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], str]:
    """[{label, score}] per text, and the runtime used (``runtime`` or the folder's fastest verified one)."""
    from blockprune.models import load_tokenizer

    name = serving_runtime(model_dir, runtime)
    tokenizer = load_tokenizer(str(model_dir))
    rt = open_runtime(name, model_dir, threads=threads)
    logits = predict_logits(
        rt, tokenizer, texts, max_length=max_length_of(model_dir, tokenizer), batch_size=batch_size, progress=progress
    )
    id2label = _id2label(model_dir)
    probs = softmax(logits)
    best = probs.argmax(-1)
    return [{"label": id2label.get(int(k), str(int(k))), "score": float(probs[i, k])} for i, k in enumerate(best)], name


def _id2label(model_dir: str | os.PathLike) -> dict[int, str]:
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}


def write_predictions(rows: Iterable[dict[str, Any]], out: TextIO, fmt: str = "jsonl") -> None:
    """JSON Lines (default) or CSV with a header."""
    rows = list(rows)
    if fmt == "csv":
        writer = csv.DictWriter(
            out, fieldnames=list(rows[0]) if rows else ["row", "label", "score"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    elif fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    else:
        raise DataError(f"output format {fmt!r} is not supported; use jsonl or csv.")


def predict_file(
    model_dir: str | os.PathLike,
    source: str,
    out: TextIO,
    *,
    text_column: str = "Text",
    fmt: str | None = None,
    out_format: str = "jsonl",
    runtime: str | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    with_text: bool = False,
    progress: bool = True,
    stdin: TextIO | None = None,
) -> str:
    """Read ``source``, predict, write one row per text to ``out``; return the runtime used."""
    texts, lines = read_texts(source, text_column, fmt, stdin)
    preds, name = predict_texts(
        model_dir, texts, runtime=runtime, batch_size=batch_size, threads=threads, progress=progress
    )
    rows = ({"row": line, **({"text": t} if with_text else {}), **p} for line, t, p in zip(lines, texts, preds))
    write_predictions(rows, out, out_format)
    return name

"""Fixtures for the data tests: small files written to tmp_path, and the local e5 tokenizer."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.paths import E5_DIR, SHC_CSV

E5 = E5_DIR
SHC = SHC_CSV


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(name, content) -> path; str content is written as UTF-8 bytes exactly as given."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return _write


@pytest.fixture
def write_rows(tmp_path: Path) -> Callable[..., Path]:
    """write_rows(name, rows, header=("Text", "Label")) -> CSV/TSV path written with the csv module."""

    def _write(name: str, rows: list[tuple[str, str]], header: tuple[str, str] = ("Text", "Label")) -> Path:
        path = tmp_path / name
        with path.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t" if name.endswith(".tsv") else ",")
            w.writerow(header)
            w.writerows(rows)
        return path

    return _write


@pytest.fixture
def e5_path() -> str:
    if not (E5 / "tokenizer.json").is_file():
        pytest.skip(f"tokenizer not available at {E5}")
    return str(E5)


@pytest.fixture
def shc_path() -> Path:
    if not SHC.is_file():
        pytest.skip(f"real data not available at {SHC}")
    return SHC


def _balanced_rows(labels: dict[str, int], prefix: str = "खबर") -> list[tuple[str, str]]:
    rows = []
    for label, n in labels.items():
        for i in range(n):
            rows.append((f"{prefix} {label} {i} " + "शब्द " * (i % 7), label))
    return rows


@pytest.fixture
def balanced_rows() -> Callable[..., list[tuple[str, str]]]:
    """balanced_rows({label: n}) -> distinct texts of varied length, n per label."""
    return _balanced_rows

"""Shared fixtures: paths to the offline model and data beside the checkout (see helpers.paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.paths import E5_DIR, MAHASENT_DIR, SHC_CSV


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    return E5_DIR


@pytest.fixture(scope="session")
def shc_csv() -> Path:
    return SHC_CSV


@pytest.fixture(scope="session")
def mahasent_dir() -> Path:
    return MAHASENT_DIR


@pytest.fixture(scope="session")
def headlines() -> list[str]:
    """The first 40 SHC headlines: the fixed set the serving runtimes are re-tested on."""
    from blockprune.data.reading import read_records

    return read_records(SHC_CSV)["text"].tolist()[:40]

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

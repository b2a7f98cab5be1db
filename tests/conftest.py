"""Shared fixtures: paths to the offline model and data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BLOCKPRUNE_SHARED", ROOT.parent / "shared"))
E5_DIR = SHARED / "models" / "e5-small-mr"
SHC_CSV = SHARED / "data" / "mahanews-shc" / "SHC_Valid.csv"

pytest.e5_dir = E5_DIR  # for helpers that build a second model inside a test


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    return E5_DIR


@pytest.fixture(scope="session")
def shc_csv() -> Path:
    return SHC_CSV

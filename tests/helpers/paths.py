"""The offline model and data beside the checkout, found one way for every test:
``$BLOCKPRUNE_SHARED``, else ``../shared`` next to the repository."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("BLOCKPRUNE_SHARED", ROOT.parent / "shared"))
E5_DIR = SHARED / "models" / "e5-small-mr"
SHC_CSV = SHARED / "data" / "mahanews-shc" / "SHC_Valid.csv"
MAHASENT_DIR = SHARED / "data" / "mahasent-st"

"""Data: read labelled text files, clean them, split them, and serve tokenised batches."""

from blockprune.data.datamodule import TextClassificationDataModule
from blockprune.data.quality import DEFAULT_POLICY, QualityReport, clean_records, repair_mojibake
from blockprune.data.reading import read_records
from blockprune.data.splits import check_splits, split_records

__all__ = [
    "DEFAULT_POLICY",
    "QualityReport",
    "TextClassificationDataModule",
    "check_splits",
    "clean_records",
    "read_records",
    "repair_mojibake",
    "split_records",
]

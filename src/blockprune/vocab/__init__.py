"""Vocabulary trimming: keep only the word pieces a corpus needs, and the embedding rows for them.

The story is :func:`blockprune.vocab.trim.trim_vocabulary` (five named stages, one module each);
:func:`trim_vocabulary_folder` runs it folder to folder (``blockprune trim-vocab``).
"""

from blockprune.vocab.corpus import changed_tokenization_rate, unk_rate
from blockprune.vocab.folder import read_text_column, trim_vocabulary_folder
from blockprune.vocab.scripts import script_key
from blockprune.vocab.trim import VocabStats, trim_vocabulary

__all__ = [
    "VocabStats",
    "changed_tokenization_rate",
    "read_text_column",
    "script_key",
    "trim_vocabulary",
    "trim_vocabulary_folder",
    "unk_rate",
]

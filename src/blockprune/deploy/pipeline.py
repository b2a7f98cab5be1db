"""``blockprune.pipeline(path)``: a transformers text-classification pipeline for any saved model.

Compacted models (layers of different widths) cannot be built by ``pipeline(model=path)``
itself, which goes through ``from_pretrained``; loading with :func:`blockprune.load_model`
first and handing the module over works for every folder blockprune writes.
"""

from __future__ import annotations

import os
from typing import Any


def pipeline(path: str | os.PathLike, **kwargs: Any):
    """A ``transformers.pipeline("text-classification")`` over the model and tokenizer in ``path``
    (PyTorch float32; ``kwargs`` go to ``transformers.pipeline``, e.g. ``top_k=None``)."""
    from transformers import pipeline as hf_pipeline

    from blockprune.models import load_model, load_tokenizer

    model = load_model(path)
    return hf_pipeline("text-classification", model=model, tokenizer=load_tokenizer(str(path)), **kwargs)

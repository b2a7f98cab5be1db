"""blockprune: smaller, faster BERT-family text classifiers by block movement pruning,
distillation and compaction. ``blockprune.load_model(path)`` loads anything it saved."""

from blockprune.models import load_model

__all__ = ["load_model", "pipeline"]
__version__ = "0.1.0"


def pipeline(path, **kwargs):
    """A transformers text-classification pipeline for any model blockprune saved (compacted ones too)."""
    from blockprune.deploy.pipeline import pipeline as _pipeline

    return _pipeline(path, **kwargs)

"""blockprune: smaller, faster BERT-family text classifiers by block movement pruning,
distillation and compaction. ``blockprune.load_model(path)`` loads anything it saved."""

from blockprune.models import load_model

__all__ = ["load_model"]
__version__ = "0.1.0"

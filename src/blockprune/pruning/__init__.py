"""Block movement pruning: masked layers, binarizers, schedule, allocation, patching, compaction."""

from blockprune.pruning.binarizers import SigmoidThresholdBinarizer, TopKBinarizer
from blockprune.pruning.callback import BlockPruning, sparsity_stats
from blockprune.pruning.compact import CompactionReport, compact_model
from blockprune.pruning.masked_linear import BlockMaskedLinear
from blockprune.pruning.patch import find_encoder_layers, patch_encoder
from blockprune.pruning.schedule import CubicSchedule

__all__ = [
    "BlockMaskedLinear",
    "BlockPruning",
    "CompactionReport",
    "CubicSchedule",
    "SigmoidThresholdBinarizer",
    "TopKBinarizer",
    "compact_model",
    "find_encoder_layers",
    "patch_encoder",
    "sparsity_stats",
]

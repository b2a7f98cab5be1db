"""Global allocation: one ranking across layers, a per-tensor minimum, the exact requested count."""

from __future__ import annotations

import pytest
import torch

from blockprune.encoder import find_encoder_layers
from blockprune.errors import ConfigError
from blockprune.pruning import BlockPruning, compact_model, sparsity_stats
from blockprune.pruning.allocation import allocate, minimum_blocks, standardized
from blockprune.pruning.binarizers import kept_blocks
from blockprune.pruning.patch import masked_layers
from helpers.tiny_bert import make_tiny


def test_allocate_matches_a_hand_ranking_with_the_minimum():
    a = torch.tensor([9.0, 8.0, 7.0, 6.0])
    b = torch.tensor([1.0, 0.5, 0.2, 0.1])
    c = torch.tensor([5.0, 4.5, 0.0, -1.0])
    # keep 6 of 12, at least 1 each: minima a:9, b:1.0, c:5.0; the other 3 by one ranking of
    # the rest (a: 8, 7, 6; b: 0.5, 0.2, 0.1; c: 4.5, 0, -1) -> 8, 7, 6: all from a.
    assert allocate([a, b, c], keep=6, minimum=[1, 1, 1]) == [4, 1, 1]
    # without minimum b is emptied: 9, 8, 7, 6, 5, 4.5
    assert allocate([a, b, c], keep=6, minimum=[0, 0, 0]) == [4, 0, 2]
    # a minimum of 2: a 9, 8; b 1.0, 0.5; c 5, 4.5 -> exactly the 6 requested
    assert allocate([a, b, c], keep=6, minimum=[2, 2, 2]) == [2, 2, 2]
    with pytest.raises(ValueError):
        allocate([a, b, c], keep=5, minimum=[2, 2, 2])


def test_standardized_allocation_ranks_each_tensors_scores_by_their_own_scale():
    a = torch.tensor([9.0, 8.0, 7.0, 6.0])
    b = torch.tensor([1.0, 0.5, 0.2, 0.1])
    c = torch.tensor([5.0, 4.5, 0.0, -1.0])
    # standardised (mean 0, population std 1), by hand:
    #   a: mean 7.5, std sqrt(1.25)            -> 1.342, 0.447, -0.447, -1.342
    #   b: mean 0.45, std 0.35                 -> 1.571, 0.143, -0.714, -1.000
    #   c: mean 2.125, std sqrt(7.046875)      -> 1.083, 0.895, -0.800, -1.177
    # the best 6: b 1.571, a 1.342, c 1.083, c 0.895, a 0.447, b 0.143 -> 2 each (raw: [4, 0, 2])
    assert allocate([a, b, c], keep=6, minimum=[0, 0, 0], standardize=True) == [2, 2, 2]
    # the best 3: b, a, c -> 1 each; scaling a tensor changes nothing
    assert allocate([a * 100, b, c / 7], keep=3, minimum=[0, 0, 0], standardize=True) == [1, 1, 1]
    assert allocate([a * 100, b, c / 7], keep=3, minimum=[0, 0, 0]) == [3, 0, 0]
    # all-equal scores standardise to zeros rather than dividing by zero: after the minima (one each),
    # the rest ranks b's 0.143 above the zeros, and the zeros above b's -0.714
    assert allocate([torch.ones(4), b], keep=4, minimum=[1, 1], standardize=True) == [2, 2]


def test_minimum_never_exceeds_what_the_uniform_rule_keeps():
    assert minimum_blocks(100, 0.05, 0.5) == 5
    assert minimum_blocks(10, 0.05, 0.5) == 1  # rounded up: a tensor is never emptied
    assert minimum_blocks(10, 0.3, 0.8) == 2  # the uniform rule keeps 2 at 80 %


def _random_scores(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, layer in enumerate(masked_layers(model)):
            # layer-dependent scale: a global ranking must then keep unequal counts per layer
            layer.mask_scores.copy_(torch.randn(layer.mask_scores.shape, generator=g) * (1 + i % 5))


@pytest.mark.parametrize("block", ["head", [16, 16]])
@pytest.mark.parametrize("sparsity", [0.5, 0.75])
@pytest.mark.parametrize("allocation", ["global", "global_standardized"])
def test_global_allocation_keeps_the_exact_count_with_the_per_layer_minimum(block, sparsity, allocation):
    model = make_tiny(num_layers=3)
    pruning = BlockPruning(sparsity, attention_block=block, allocation=allocation, min_keep=0.2)
    pruning.patch(model)
    _random_scores(model)
    for layer in masked_layers(model):
        layer.set_sparsity(sparsity)
    groups: dict[str, list] = {"attention": [], "ffn": []}
    seen: dict[int, torch.Tensor] = {}
    for layer in find_encoder_layers(model):
        for role in layer.roles:
            linear = layer.linear(role)
            ptr = linear.mask_scores.data_ptr()
            if ptr in seen:  # shared scores (a head's Q/K/V/O, the FFN pair) count once, with one mask
                assert torch.equal(seen[ptr].flatten(), linear.block_mask().flatten())
                continue
            seen[ptr] = linear.block_mask()
            groups["ffn" if role.startswith("ffn") else "attention"].append(linear)
    sizes = {k: [m.mask_scores.numel() for m in v] for k, v in groups.items()}
    counts = {k: [int(m.block_mask().sum()) for m in v] for k, v in groups.items()}
    for kind in groups:
        assert sum(counts[kind]) == kept_blocks(sum(sizes[kind]), sparsity)  # exact over the group
        assert all(c >= minimum_blocks(n, 0.2, sparsity) for c, n in zip(counts[kind], sizes[kind]))
    assert len(set(counts["ffn"])) > 1  # not the uniform split
    # the kept FFN neurons are the globally best (beyond each layer's minimum), ranked raw or standardised
    ffn = groups["ffn"]

    def ranked(m):
        values = m.mask_scores.detach().flatten()
        return standardized(values) if allocation == "global_standardized" else values

    kept_min = min(
        float(ranked(m)[m.block_mask().flatten() > 0].min())
        for m in ffn
        if int(m.block_mask().sum()) > minimum_blocks(m.mask_scores.numel(), 0.2, sparsity)
    )
    dropped_max = max(float(ranked(m)[m.block_mask().flatten() == 0].max()) for m in ffn)
    assert kept_min >= dropped_max


def test_global_masks_follow_the_scores_after_an_update_and_compaction_keeps_the_logits():
    model = make_tiny(num_layers=3)
    BlockPruning(0.5, attention_block="head", allocation="global", min_keep=0.1).patch(model)
    _random_scores(model)
    for layer in masked_layers(model):
        layer.set_sparsity(0.5)
    before = sparsity_stats(model)["ffn_neurons_alive"]
    ffn0 = find_encoder_layers(model)[0].linear("ffn_in")
    with torch.no_grad():
        ffn0.mask_scores.add_(100.0)  # layer 0's neurons now outrank all others
    assert int(ffn0.block_mask().sum()) == ffn0.mask_scores.numel()
    assert sparsity_stats(model)["ffn_neurons_alive"] == before  # the same total, reallocated
    ids = torch.randint(5, 90, (2, 9))
    with torch.no_grad():
        masked = model(input_ids=ids).logits
        compact_model(model)
        compacted = model(input_ids=ids).logits
    torch.testing.assert_close(compacted, masked, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"allocation": "layerwise"}, "prune.allocation"),
        ({"allocation": "global", "method": "sigmoid_threshold", "reg_lambda": 1.0}, "method=topk"),
        ({"allocation": "global", "min_keep": 0.6}, "prune.min_keep"),
        ({"allocation": "global_standardized", "method": "sigmoid_threshold", "reg_lambda": 1.0}, "method=topk"),
    ],
)
def test_bad_allocation_settings_fail_early(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BlockPruning(0.5, **kwargs)

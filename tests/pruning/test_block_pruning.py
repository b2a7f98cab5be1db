"""Golden numbers for block movement pruning: exact sparsity, schedule, STE gradients, compaction."""

from __future__ import annotations

import pytest
import torch

from blockprune.errors import ConfigError
from blockprune.models import build_tiny_classifier, load_model
from blockprune.pruning import (
    BlockMaskedLinear,
    BlockPruning,
    CubicSchedule,
    compact_model,
    find_encoder_layers,
    sparsity_stats,
)
from blockprune.pruning.binarizers import kept_blocks
from blockprune.pruning.patch import masked_layers
from helpers.paths import E5_DIR

LABELS = {"a": 0, "b": 1, "c": 2}


@pytest.fixture
def tiny(e5_dir):
    model = build_tiny_classifier(str(e5_dir), 3, {v: k for k, v in LABELS.items()}, LABELS, seed=0)
    return model.eval()


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 5000, (4, 24), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 17:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _randomize_scores(model, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in masked_layers(model):
            layer.mask_scores.copy_(torch.randn(layer.mask_scores.shape, generator=g))


def _set_sparsity(model, sparsity: float) -> None:
    for layer in masked_layers(model):
        layer.set_sparsity(sparsity)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_topk_sparsity_is_exact_per_matrix(tiny, sparsity):
    BlockPruning(sparsity).patch(tiny)
    _randomize_scores(tiny)
    _set_sparsity(tiny, sparsity)
    for layer in masked_layers(tiny):
        blocks = layer.block_mask()
        assert int(blocks.sum()) == kept_blocks(blocks.numel(), sparsity)
    # tiny: 4x4 attention blocks per matrix and 256 FFN neurons, so these levels are exact
    assert sparsity_stats(tiny)["sparsity_encoder_linear"] == pytest.approx(sparsity, abs=1e-9)


def test_patching_is_structural_and_keeps_embeddings_dense(tiny):
    BlockPruning(0.5).patch(tiny)
    assert len(masked_layers(tiny)) == 2 * 6
    assert not isinstance(tiny.classifier, BlockMaskedLinear)
    assert not isinstance(tiny.bert.pooler.dense, BlockMaskedLinear)
    layer = find_encoder_layers(tiny)[0]
    assert layer.linear("ffn_in").mask_scores is layer.linear("ffn_out").mask_scores  # one score per neuron
    assert layer.linear("q").mask_scores.shape == (4, 4)  # 128x128 in 32x32 blocks


def test_sparsity_zero_gives_the_dense_model(tiny):
    dense = tiny(**_inputs()).logits
    BlockPruning(0.0).patch(tiny)
    _randomize_scores(tiny)
    assert torch.equal(tiny(**_inputs()).logits, dense)


def test_schedule_golden_values():
    s = CubicSchedule(final_sparsity=0.5, total_steps=100, warmup=0.1, hold=0.2)
    assert [s.sparsity(t) for t in (0, 9, 10)] == [0.0, 0.0, 0.0]
    assert s.sparsity(45) == pytest.approx(0.5 * (1 - 0.5**3))  # halfway through steps 10..80
    assert s.sparsity(24) == pytest.approx(0.5 * (1 - 0.8**3))
    assert [s.sparsity(t) for t in (80, 99, 100)] == [0.5, 0.5, 0.5]
    assert all(s.sparsity(t) <= s.sparsity(t + 1) for t in range(100))


def test_callback_sets_sparsity_from_global_step_so_resume_continues(tiny):
    pruning = BlockPruning(0.5, warmup=0.1, hold=0.2)
    pruning.patch(tiny)
    pruning.schedule = CubicSchedule(0.5, 100, 0.1, 0.2)
    pruning.set_step(tiny, 45)  # a run resumed at step 45 sees the same sparsity as one that never stopped
    assert [float(m.sparsity) for m in masked_layers(tiny)] == pytest.approx([0.4375] * 12)
    assert pruning.in_pruning_phase(79) and not pruning.in_pruning_phase(80)


def test_gradients_reach_scores_and_weights_through_straight_through(tiny):
    BlockPruning(0.5).patch(tiny)
    _randomize_scores(tiny)
    _set_sparsity(tiny, 0.5)
    tiny.train()
    loss = tiny(**_inputs(), labels=torch.tensor([0, 1, 2, 0])).loss
    loss.backward()
    for layer in masked_layers(tiny):
        assert layer.mask_scores.grad is not None and layer.mask_scores.grad.abs().sum() > 0
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        # masked weights get no gradient: they did not take part in the forward pass
        dead = layer.weight_mask() == 0
        assert layer.weight.grad[dead].abs().sum() == 0


def test_sigmoid_threshold_penalty_and_mask(tiny):
    pruning = BlockPruning(0.5, method="sigmoid_threshold", reg_lambda=1.0, threshold=0.5)
    pruning.patch(tiny)
    layer = masked_layers(tiny)[0]
    with torch.no_grad():
        layer.mask_scores.copy_(torch.tensor([[-1.0, 1.0, 2.0, -3.0]] * 4))
    layer.reg_lambda.fill_(2.0)
    assert layer.block_mask().tolist() == [[0.0, 1.0, 1.0, 0.0]] * 4
    expected = 2.0 * torch.sigmoid(torch.tensor([-1.0, 1.0, 2.0, -3.0])).mean()
    assert layer.regularization_loss().item() == pytest.approx(expected.item())


def _kill_head(model, layer_idx: int, head: int, keep_one_block: bool = False) -> None:
    """Zero the scores of every block of one head (all four matrices) and make them lose the top-k."""
    layer = find_encoder_layers(model)[layer_idx]
    assert layer.head_dim == 32  # = block size, so head h is block row h of Q/K/V and block column h of O
    with torch.no_grad():
        for lin in masked_layers(model):
            lin.mask_scores.fill_(1.0)
        for name in ("query", "key", "value"):
            getattr(layer.attention, name).mask_scores[head].fill_(-1.0)
        layer.linear("o").mask_scores[:, head].fill_(-1.0)
        if keep_one_block:
            layer.attention.value.mask_scores[head, 0] = 2.0
            layer.linear("o").mask_scores[0, head] = 2.0


def test_head_with_all_blocks_empty_is_removed_and_one_with_a_live_block_kept(tiny):
    pruning = BlockPruning(0.25)
    pruning.patch(tiny)
    _kill_head(tiny, 0, 2)
    _set_sparsity(tiny, 0.25)  # 4 of 16 blocks go per attention matrix: exactly head 2's
    report = compact_model(tiny)
    assert report.heads_kept[0] == [0, 1, 3]

    other = build_tiny_classifier(str(E5_DIR), 3, {v: k for k, v in LABELS.items()}, LABELS, seed=0)
    BlockPruning(0.25).patch(other)
    _kill_head(other, 0, 2, keep_one_block=True)
    for lin in masked_layers(other):
        lin.set_sparsity(3 / 16 if lin.grid == (4, 4) else 0.0)  # 3 dead blocks: the head keeps one
    assert compact_model(other).heads_kept[0] == [0, 1, 2, 3]


def test_a_layer_keeps_at_least_one_head(tiny):
    BlockPruning(0.5).patch(tiny)
    layer = find_encoder_layers(tiny)[1]
    with torch.no_grad():
        layer.attention.value.mask_scores.fill_(-5.0)
    for lin in masked_layers(tiny):
        lin.set_sparsity(0.0)
    layer.attention.value.set_sparsity(0.99)  # every value block of layer 1 masked
    masked = tiny(**_inputs()).logits
    report = compact_model(tiny)
    assert len(report.heads_kept[1]) == 1
    assert torch.allclose(tiny(**_inputs()).logits, masked, atol=1e-5)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_compacted_tiny_model_gives_the_masked_logits(tiny, sparsity):
    BlockPruning(sparsity).patch(tiny)
    _randomize_scores(tiny, seed=int(sparsity * 100))
    _set_sparsity(tiny, sparsity)
    masked = tiny(**_inputs()).logits
    n_params = sum(p.numel() for p in tiny.parameters())
    report = compact_model(tiny)
    assert (tiny(**_inputs()).logits - masked).abs().max() <= 1e-4
    assert sum(p.numel() for p in tiny.parameters()) < n_params
    assert sum(report.ffn_kept) == round(512 * (1 - sparsity))


def test_value_bias_of_a_removed_head_is_folded_exactly(tiny):
    """A head with dead value rows but live output columns still adds a constant: it must be folded."""
    BlockPruning(0.25).patch(tiny)
    layer = find_encoder_layers(tiny)[0]
    with torch.no_grad():
        for lin in masked_layers(tiny):
            lin.mask_scores.fill_(1.0)
        layer.attention.value.mask_scores[1].fill_(-1.0)
        layer.attention.value.bias.normal_()
    for lin in masked_layers(tiny):
        lin.set_sparsity(0.0)
    layer.attention.value.set_sparsity(0.25)
    masked = tiny(**_inputs()).logits
    assert compact_model(tiny).heads_kept[0] == [0, 2, 3]
    assert (tiny(**_inputs()).logits - masked).abs().max() <= 1e-5


def test_save_and_load_in_one_call_gives_the_same_logits(tiny, tmp_path):
    BlockPruning(0.5).patch(tiny)
    _randomize_scores(tiny)
    _set_sparsity(tiny, 0.5)
    compact_model(tiny)
    expected = tiny(**_inputs()).logits
    tiny.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config.blockprune_layout == tiny.config.blockprune_layout
    assert torch.allclose(loaded(**_inputs()).logits, expected, atol=1e-6)
    assert not any(isinstance(m, BlockMaskedLinear) for m in loaded.modules())


def test_compaction_on_e5_small_mr(e5_dir):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(e5_dir), num_labels=12, dtype=torch.float32).eval()
    pruning = BlockPruning(0.5, attention_block=(32, 32))
    pruning.patch(model)
    _randomize_scores(model)
    _set_sparsity(model, 0.5)
    with torch.no_grad():
        masked = model(**_inputs()).logits
        report = compact_model(model)
        compacted = model(**_inputs()).logits
    assert (compacted - masked).abs().max() <= 1e-4
    assert sum(report.ffn_kept) == 12 * 768


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sparsity": 1.0}, "prune.sparsity"),
        ({"sparsity": -0.1}, "prune.sparsity"),
        ({"sparsity": 0.5, "method": "magnitude"}, "prune.method"),
        ({"sparsity": 0.5, "warmup": 0.6, "hold": 0.5}, "prune.warmup"),
        ({"sparsity": 0.5, "method": "sigmoid_threshold"}, "reg_lambda"),
    ],
)
def test_bad_pruning_config_fails_with_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BlockPruning(**kwargs)


def test_block_shape_that_does_not_divide_fails_before_training(tiny):
    with pytest.raises(ConfigError, match=r"prune.attention_block=\[48, 32\]"):
        BlockPruning(0.5, attention_block=(48, 32)).patch(tiny)


def test_head_mode_prunes_whole_heads_and_compacts_exactly(tiny):
    BlockPruning(0.5, attention_block="head").patch(tiny)
    layer = find_encoder_layers(tiny)[0]
    att = layer.attention
    assert att.query.mask_scores is att.key.mask_scores is att.value.mask_scores is layer.linear("o").mask_scores
    _randomize_scores(tiny, seed=3)
    _set_sparsity(tiny, 0.5)
    masked = tiny(**_inputs()).logits
    report = compact_model(tiny)
    assert [len(h) for h in report.heads_kept] == [2, 2]  # half of 4 heads in each layer
    assert (tiny(**_inputs()).logits - masked).abs().max() <= 1e-5


def test_sparsity_survives_a_state_dict_round_trip(tiny):
    """A checkpoint restores the mask exactly: the sparsity buffer reloads into the layer."""
    BlockPruning(0.5).patch(tiny)
    _randomize_scores(tiny)
    _set_sparsity(tiny, 0.5)
    expected = tiny(**_inputs()).logits
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    _set_sparsity(tiny, 0.0)
    tiny.load_state_dict(state)
    assert torch.equal(tiny(**_inputs()).logits, expected)


def test_fill_heads_restores_the_blocks_of_kept_heads(tiny):
    BlockPruning(0.25).patch(tiny)
    _kill_head(tiny, 0, 2)
    _set_sparsity(tiny, 0.25)
    layer = find_encoder_layers(tiny)[0]
    with torch.no_grad():  # one extra dead block in a kept head: filled, it comes back
        layer.attention.query.mask_scores[0, 0] = -2.0
    query_weight = layer.attention.query.weight.detach().clone()
    report = compact_model(tiny, fill_heads=True)
    assert report.heads_kept[0] == [0, 1, 3]
    kept_rows = torch.cat([torch.arange(h * 32, (h + 1) * 32) for h in (0, 1, 3)])
    assert torch.equal(layer.attention.query.weight, query_weight[kept_rows])

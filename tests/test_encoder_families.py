"""Every supported encoder family: patch -> random mask -> compaction -> save -> load_model, exactly.

Tiny random models of each family are built here from their transformers config, so the test
runs offline and checks the real module code (head count at forward time, fused/gated layouts).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    CamembertConfig,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    ErnieConfig,
    ModernBertConfig,
    MPNetConfig,
    MPNetForSequenceClassification,
    RobertaConfig,
    XLMRobertaConfig,
    XLMRobertaXLConfig,
)

from blockprune import load_model
from blockprune.encoder import LAYOUT_KEY, find_encoder_layers
from blockprune.errors import BlockpruneError
from blockprune.flops import count_parameters, encoder_layout, flops_per_token
from blockprune.pruning import BlockPruning, compact_model, sparsity_stats
from blockprune.pruning.patch import masked_layers

VOCAB, HIDDEN, HEADS, FFN, LAYERS, LABELS = 100, 64, 4, 128, 2, 3
BERT_ARGS = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_attention_heads": HEADS,
    "intermediate_size": FFN,
    "num_hidden_layers": LAYERS,
    "max_position_embeddings": 64,
    "pad_token_id": 1,
}
DEBERTA_ARGS = dict(BERT_ARGS, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8)

CONFIGS = {
    "bert": lambda: BertConfig(**BERT_ARGS),
    "roberta": lambda: RobertaConfig(**BERT_ARGS),
    "xlm-roberta": lambda: XLMRobertaConfig(**BERT_ARGS),
    "xlm-roberta-xl": lambda: XLMRobertaXLConfig(**BERT_ARGS),
    "camembert": lambda: CamembertConfig(**BERT_ARGS),
    "electra": lambda: ElectraConfig(**BERT_ARGS, embedding_size=32),
    "ernie": lambda: ErnieConfig(**BERT_ARGS),
    "distilbert": lambda: DistilBertConfig(
        vocab_size=VOCAB, dim=HIDDEN, n_heads=HEADS, hidden_dim=FFN, n_layers=LAYERS, max_position_embeddings=64
    ),
    # v3 (and mDeBERTa) share the content projections for positions; v2 has its own pos_key/pos_query_proj
    "deberta-v3": lambda: DebertaV2Config(**DEBERTA_ARGS, share_att_key=True),
    "deberta-v2": lambda: DebertaV2Config(**DEBERTA_ARGS, share_att_key=False, conv_kernel_size=3, embedding_size=32),
    "modernbert": lambda: ModernBertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        num_hidden_layers=3,
        max_position_embeddings=64,
        local_attention=8,  # a window shorter than the input, so local layers differ from global ones
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        cls_token_id=2,
        sep_token_id=3,
    ),
    # biases everywhere: value biases of removed heads and gated FFN constants are folded
    "modernbert-bias": lambda: ModernBertConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        num_hidden_layers=2,
        max_position_embeddings=64,
        attention_bias=True,
        mlp_bias=True,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        cls_token_id=2,
        sep_token_id=3,
    ),
}


def make(family: str, seed: int = 0):
    config = CONFIGS[family]()
    config.num_labels = LABELS
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # random non-zero biases, so that folding them is tested
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return model.eval()


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _random_mask(model, sparsity: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in masked_layers(model):
            layer.mask_scores.copy_(torch.randn(layer.mask_scores.shape, generator=g))
            layer.set_sparsity(sparsity)


@pytest.mark.parametrize("block", [(16, 16), "head"])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_compaction_is_exact_and_survives_save_and_load(family, block, tmp_path):
    model = make(family)
    BlockPruning(0.5, attention_block=block).patch(model)
    assert masked_layers(model), family
    _random_mask(model, 0.5, seed=len(family))
    stats = sparsity_stats(model)
    with torch.inference_mode():
        masked = model(**_inputs()).logits
    n_params = sum(p.numel() for p in model.parameters())
    report = compact_model(model)
    assert not masked_layers(model)
    with torch.inference_mode():
        compacted = model(**_inputs()).logits
    torch.testing.assert_close(compacted, masked, atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in model.parameters()) < n_params
    layers = find_encoder_layers(model)
    assert sum(report.ffn_kept) == sum(layer.ffn_size for layer in layers) == round(len(layers) * FFN * 0.5)
    assert [len(h) for h in report.heads_kept] == [layer.num_heads for layer in layers]
    assert stats["ffn_neurons_alive"] == sum(report.ffn_kept)
    if block == "head":  # one score per head: exactly half of them go, in each layer
        assert [len(h) for h in report.heads_kept] == [HEADS // 2] * len(layers)
        assert stats["heads_alive"] == sum(len(h) for h in report.heads_kept)

    model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert getattr(loaded.config, LAYOUT_KEY) == getattr(model.config, LAYOUT_KEY)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**_inputs()).logits, compacted, atol=1e-6, rtol=1e-6)
    assert encoder_layout(loaded) == encoder_layout(model)


@pytest.mark.parametrize("family", ["distilbert", "deberta-v2", "modernbert"])
def test_heads_removed_by_hand_update_what_the_forward_reads(family):
    """Removing heads 1 and 3 (zeroed O columns) gives the same logits as zeroing them."""
    model = make(family)
    BlockPruning(0.0, attention_block="head").patch(model)
    with torch.no_grad():
        for layer in find_encoder_layers(model):
            layer.linear("o").mask_scores.copy_(
                torch.tensor([[1.0], [-1.0], [1.0], [-1.0]]).view_as(layer.linear("o").mask_scores)
            )
    for lin in masked_layers(model):
        lin.set_sparsity(0.5 if lin.grid[0] * lin.grid[1] == HEADS else 0.0)
    with torch.inference_mode():
        masked = model(**_inputs()).logits
    report = compact_model(model)
    assert report.heads_kept == [[0, 2]] * len(report.heads_kept)
    for layer in find_encoder_layers(model):
        for name in layer.family.head_count_attrs:
            assert getattr(layer.attention, name) == 2
    with torch.inference_mode():
        torch.testing.assert_close(model(**_inputs()).logits, masked, atol=1e-5, rtol=1e-5)


def test_modernbert_flops_hand_count():
    """Fused QKV and gated FFN counted from shapes: Wqkv 3*H*a, Wo a*H, Wi H*2f, Wo f*H."""
    model = make("modernbert")
    n, h, a, f = 10, HIDDEN, HIDDEN, FFN
    layer = 2 * 3 * h * a + 2 * a * h + 2 * n * a + 2 * n * a + 2 * h * 2 * f + 2 * f * h
    assert layer == 2 * 3 * 64 * 64 + 2 * 64 * 64 + 2 * 10 * 64 * 2 + 2 * 64 * 256 + 2 * 128 * 64 == 84_480
    head = 2 * (h * h + h * LABELS) / n  # ModernBertPredictionHead dense + classifier, once per sequence
    got = flops_per_token(model, n)
    assert [pl["total"] for pl in got["per_layer"]] == [layer] * 3
    assert [pl["ffn"] for pl in got["per_layer"]] == [FFN] * 3  # neurons, not Wi's 2f rows
    assert got["total"] == pytest.approx(3 * layer + head)


def test_deberta_flops_hand_count_with_relative_positions():
    """DeBERTa-v3: c2p and p2c each score a query against 2*span positions and project them once."""
    model = make("deberta-v3")
    n, h, a, f, r, terms = 20, HIDDEN, HIDDEN, FFN, 2 * 8, 2  # position_buckets=8: span 8
    position = terms * (2 * r * a + 2 * r * h * a / n)
    assert position == pytest.approx(2 * (2 * 16 * 64 + 2 * 16 * 64 * 64 / 20)) == pytest.approx(17203.2)
    layer = 2 * 3 * h * a + 2 * a * h + 2 * n * a + 2 * n * a + position + 2 * h * f + 2 * f * h
    got = flops_per_token(model, n)
    assert [pl["total"] for pl in got["per_layer"]] == pytest.approx([layer] * LAYERS)
    assert got["breakdown"]["attn_position"] == pytest.approx(LAYERS * position)
    assert got["total"] == pytest.approx(LAYERS * layer + 2 * (h * h + h * LABELS) / n)  # ContextPooler + classifier


@pytest.mark.parametrize("compacted", [False, True])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_flops_equal_torch_flop_counter(family, compacted):
    """The analytic count equals what torch counts in a real forward pass (one unpadded sequence)."""
    model = make(family)
    if compacted:
        BlockPruning(0.5, attention_block="head").patch(model)
        _random_mask(model, 0.5, seed=2)
        compact_model(model)
    n = 20
    ids = torch.randint(5, VOCAB, (1, n), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:  # grad mode on: the counter's module tracker needs it
        model(input_ids=ids)
    assert counter.get_total_flops() == pytest.approx(flops_per_token(model, n)["total"] * n, rel=1e-9)


def test_modernbert_flops_after_compaction():
    model = make("modernbert")
    BlockPruning(0.5, attention_block="head").patch(model)
    _random_mask(model, 0.5, seed=1)
    compact_model(model)
    n, h = 16, HIDDEN
    a, f = 2 * 16, FFN // 2
    layer = 2 * 3 * h * a + 2 * a * h + 2 * n * a + 2 * n * a + 2 * h * 2 * f + 2 * f * h
    assert [pl["total"] for pl in flops_per_token(model, n)["per_layer"]] == [layer] * 3
    assert [(x["heads"], x["ffn"]) for x in encoder_layout(model)] == [(2, 64)] * 3


def test_count_parameters_sums_for_every_family():
    for family in sorted(CONFIGS):
        model = make(family)
        counts = count_parameters(model)
        assert counts["embeddings"] + counts["encoder"] + counts["head"] + counts["other"] == counts["total"]
        assert counts["word_embeddings"] == VOCAB * (32 if family in ("electra", "deberta-v2") else HIDDEN), family


@pytest.mark.parametrize(
    ("config", "cls", "name"),
    [
        (
            AlbertConfig(
                vocab_size=VOCAB, embedding_size=16, **{k: v for k, v in BERT_ARGS.items() if k != "vocab_size"}
            ),
            AlbertForSequenceClassification,
            "AlbertForSequenceClassification",
        ),
        (MPNetConfig(**BERT_ARGS), MPNetForSequenceClassification, "MPNetForSequenceClassification"),
    ],
)
def test_unsupported_family_is_a_clear_error(config, cls, name):
    model = cls(config)
    for call in (
        lambda: BlockPruning(0.5).patch(model),
        lambda: flops_per_token(model, 8),
        lambda: compact_model(model),
    ):
        with pytest.raises(
            BlockpruneError, match=rf"{name}.*Supported: BERT-like.*DeBERTa-v2/v3.*DistilBERT.*ModernBERT"
        ):
            call()


@pytest.mark.parametrize("family", ["distilbert", "modernbert"])
def test_fill_heads_gives_kept_heads_their_dense_rows_back(family):
    """Separate and fused Q/K/V alike: a kept head's rows are the unmasked original rows."""
    model = make(family)
    BlockPruning(0.5, attention_block=(16, 16)).patch(model)
    _random_mask(model, 0.5, seed=4)
    layer = find_encoder_layers(model)[0]
    role = "qkv" if "qkv" in layer.roles else "q"
    dense_q = layer.linear(role).weight.detach().clone()[: layer.attention_width]  # Q rows (fused: first third)
    report = compact_model(model, fill_heads=True)
    kept = report.heads_kept[0]
    rows = torch.cat([torch.arange(h * 16, (h + 1) * 16) for h in kept])
    assert torch.equal(layer.linear(role).weight[: len(kept) * 16], dense_q[rows])
    assert (layer.linear(role).weight != 0).all()  # the masked blocks of kept heads came back


@pytest.mark.slow
@pytest.mark.parametrize("family", ["distilbert", "deberta-v3", "modernbert"])
def test_a_pruning_job_runs_end_to_end(family, e5_dir, tmp_path):
    """A user's job on a small model of the family: train with head pruning, compact, save, reload."""
    from transformers import AutoTokenizer

    from blockprune.main import train
    from helpers.jobs import make_cfg

    tok = AutoTokenizer.from_pretrained(e5_dir)
    config = CONFIGS[family]()
    config.vocab_size, config.pad_token_id = len(tok), tok.pad_token_id
    for key in ("bos_token_id", "cls_token_id"):
        setattr(config, key, tok.cls_token_id)
    for key in ("eos_token_id", "sep_token_id"):
        setattr(config, key, tok.sep_token_id)
    config.max_position_embeddings = 512
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    overrides = ["model=e5_small_mr", f"model.tokenizer={tmp_path / 'model'}", "prune=block", "prune.sparsity=0.5"]
    results = train(make_cfg(tmp_path / "run", [*overrides, "prune.attention_block=head", "vocab.trim=true"]))
    assert results["status"] == "completed"
    assert results["compaction"]["heads_left"] == results["compaction"]["heads_total"] // 2
    assert results["compaction"]["max_abs_logit_diff"] <= 1e-4
    loaded = load_model(results["model_dir"])
    assert [x["heads"] for x in encoder_layout(loaded)] == [HEADS // 2] * len(find_encoder_layers(loaded))

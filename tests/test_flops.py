"""Analytic FLOPs, parameter counts and layout, checked against hand counts."""

from __future__ import annotations

import pytest
import torch

from blockprune.errors import BlockpruneError
from blockprune.flops import count_parameters, encoder_layout, flops_per_token
from helpers.tiny_bert import compact_layer, make_compacted, make_tiny

H, D, F, C = 64, 16, 128, 3  # hidden, head dim, FFN width, labels


def hand_layer(heads: int, ffn: int, n: int) -> float:
    a = heads * D
    return 2 * 3 * H * a + 2 * a * H + 2 * n * a + 2 * n * a + 2 * H * ffn + 2 * ffn * H


def test_flops_dense_hand_count():
    n = 10
    got = flops_per_token(make_tiny(3), n)
    # one dense layer: QKV 2*3*64*64 = 24576, O 2*64*64 = 8192, QK^T 2*10*64 = 1280,
    # AV 1280, FFN 2*64*128*2 = 32768 -> 68096; head 2*(64*64 + 64*3)/10 = 857.6
    assert hand_layer(4, 128, n) == 68096
    assert got["total"] == pytest.approx(3 * 68096 + 857.6)
    b = got["breakdown"]
    assert b["qkv"] == 3 * 24576 and b["attn_out"] == 3 * 8192
    assert b["attn_scores"] == 3 * 1280 and b["attn_context"] == 3 * 1280
    assert b["ffn"] == 3 * 32768 and b["head"] == pytest.approx(857.6)
    assert b["embedding_projection"] == 0
    assert got["total"] == pytest.approx(sum(b.values()))
    assert [pl["total"] for pl in got["per_layer"]] == [68096] * 3


def test_flops_after_removing_heads_and_neurons():
    n = 32
    got = flops_per_token(make_compacted(), n)
    # layer 0: 2 heads (a=32), 50 neurons; layer 1: 1 head (a=16), 0 neurons; layer 2 dense
    l0 = 2 * 3 * 64 * 32 + 2 * 32 * 64 + 2 * 32 * 32 + 2 * 32 * 32 + 2 * 64 * 50 * 2
    l1 = 2 * 3 * 64 * 16 + 2 * 16 * 64 + 2 * 32 * 16 + 2 * 32 * 16 + 0
    l2 = 2 * 3 * 64 * 64 + 2 * 64 * 64 + 2 * 32 * 64 + 2 * 32 * 64 + 2 * 64 * 128 * 2
    assert (l0, l1, l2) == (hand_layer(2, 50, n), hand_layer(1, 0, n), hand_layer(4, 128, n))
    assert [pl["total"] for pl in got["per_layer"]] == [l0, l1, l2]
    assert got["total"] == pytest.approx(l0 + l1 + l2 + 2 * (64 * 64 + 64 * 3) / 32)
    # attention terms grow with n, projections do not
    longer = flops_per_token(make_compacted(), 2 * n)
    assert longer["breakdown"]["attn_scores"] == 2 * got["breakdown"]["attn_scores"]
    assert longer["breakdown"]["qkv"] == got["breakdown"]["qkv"]


def test_layout_reads_shapes_not_config():
    model = make_compacted()
    assert model.config.num_attention_heads == 4 and model.config.intermediate_size == 128  # stale config
    layout = encoder_layout(model)
    assert [(x["heads"], x["head_dim"], x["ffn"]) for x in layout] == [(2, 16, 50), (1, 16, 0), (4, 16, 128)]
    assert sum(x["params"] for x in layout) == count_parameters(model)["encoder"]


@pytest.mark.parametrize("compacted", [False, True])
def test_count_parameters(compacted):
    model = make_compacted() if compacted else make_tiny(3)
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["embeddings"] + counts["encoder"] + counts["head"] + counts["other"] == counts["total"]
    assert counts["other"] == 0
    assert counts["word_embeddings"] == 100 * 64
    assert counts["embeddings"] == 100 * 64 + 64 * 64 + 2 * 64 + 2 * 64  # word, position, type, LayerNorm
    assert counts["head"] == 64 * 64 + 64 + 64 * 3 + 3  # pooler + classifier
    dense_layer = 3 * (64 * 64 + 64) + (64 * 64 + 64) + 2 * 64 + (64 * 128 + 128) + (128 * 64 + 64) + 2 * 64
    if not compacted:
        assert counts["encoder"] == 3 * dense_layer


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_compacted_model_runs_and_equals_masked_dense(attn):
    """Slicing heads/neurons out == zeroing their output columns in the dense model."""
    dense = make_tiny(3, attn=attn)
    with torch.no_grad():  # "mask" layer 0: heads 1 and 3, neurons 50.. ; layer 1: heads 0-2, all neurons
        l0, l1 = dense.bert.encoder.layer[0], dense.bert.encoder.layer[1]
        l0.attention.output.dense.weight[:, 16:32] = 0
        l0.attention.output.dense.weight[:, 48:64] = 0
        l0.output.dense.weight[:, 50:] = 0
        l1.attention.output.dense.weight[:, :48] = 0
        l1.output.dense.weight[:] = 0
    compacted = make_compacted(attn=attn)
    ids = torch.randint(1, 100, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.inference_mode():
        want = dense(input_ids=ids, attention_mask=mask).logits
        got = compacted(input_ids=ids, attention_mask=mask).logits
    assert got.shape == (3, 3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_zero_head_layer_still_runs():
    model = make_tiny(2)
    compact_layer(model, 1, [], range(128))
    assert encoder_layout(model)[1]["heads"] == 0
    with torch.inference_mode():
        assert model(input_ids=torch.randint(1, 100, (2, 5))).logits.shape == (2, 3)


def test_non_bert_model_is_a_clear_error():
    with pytest.raises(BlockpruneError, match="BERT-shaped"):
        flops_per_token(torch.nn.Linear(3, 3), 8)

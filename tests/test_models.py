"""Loading saved classifiers: round trip, and clear errors for folders that are not classifiers."""

from __future__ import annotations

import pytest
import torch
from transformers import BertModel

from blockprune import load_model
from blockprune.errors import BlockpruneError
from helpers.tiny_bert import make_tiny


def test_load_model_round_trip(tmp_path):
    model = make_tiny(2)
    model.save_pretrained(tmp_path / "clf")
    loaded = load_model(tmp_path / "clf")
    ids = torch.randint(1, 100, (2, 6))
    with torch.inference_mode():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_load_model_errors(tmp_path):
    with pytest.raises(BlockpruneError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BlockpruneError, match="no config.json"):
        load_model(tmp_path / "empty")
    BertModel(make_tiny(2).config).save_pretrained(tmp_path / "encoder_only")
    with pytest.raises(BlockpruneError, match="without a sequence-classification head.*BertModel"):
        load_model(tmp_path / "encoder_only")

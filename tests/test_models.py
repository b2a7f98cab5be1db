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


def test_a_saved_tokenizer_names_a_class_transformers_4_also_has(tmp_path):
    """transformers 5 writes "TokenizersBackend", which 4.x (and so Optimum) cannot load; the same
    tokenizer.json reloads identically under the name both versions have."""
    import json

    from transformers import AutoTokenizer

    from blockprune.models import load_tokenizer, save_tokenizer
    from helpers.paths import E5_DIR

    tokenizer = load_tokenizer(str(E5_DIR))
    save_tokenizer(tokenizer, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())["tokenizer_class"] == (
        "PreTrainedTokenizerFast"
    )
    texts = ["मराठी बातमी", "शेतकऱ्यांना मदत जाहीर"]
    assert AutoTokenizer.from_pretrained(tmp_path / "ours")(texts)["input_ids"] == tokenizer(texts)["input_ids"]

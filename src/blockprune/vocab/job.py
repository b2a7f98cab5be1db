"""Vocabulary trimming as a step of a training job: trim to the training texts, then re-test."""

from __future__ import annotations

from typing import Any

from blockprune.evaluation import predict_texts, test_predictions


def trim_job_vocabulary(
    model, datamodule, extra_corpora: list[str], keep_script_chars: bool
) -> tuple[Any, Any, dict, dict]:
    """Keep the vocabulary the training texts use (plus single characters of their scripts),
    then re-test with the trimmed tokenizer, so the reported accuracy is the saved model's.

    Returns (model, tokenizer, trimming info with held-out UNK/re-split rates, test prediction record).
    """
    from blockprune.vocab import changed_tokenization_rate, read_text_column, trim_vocabulary, unk_rate

    extra = [t for f in extra_corpora for t in read_text_column(f, datamodule.text_column)]
    corpus = datamodule.texts("train") + extra
    original = datamodule.tokenizer
    model, tokenizer, stats = trim_vocabulary(model, original, corpus, keep_script_chars=keep_script_chars)
    held_out = datamodule.texts("test")
    info = {
        **stats.to_dict(),
        "heldout_unk_rate_before": unk_rate(original, held_out),
        "heldout_unk_rate": unk_rate(tokenizer, held_out),
        "heldout_changed_tokenization_rate": changed_tokenization_rate(original, tokenizer, held_out),
    }
    pred = predict_texts(model, tokenizer, held_out, datamodule.max_length)
    return model, tokenizer, info, test_predictions(datamodule, pred)

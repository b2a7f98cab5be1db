"""Vocabulary trimming: keep only the word pieces a corpus needs, and the embedding rows for them.

A multilingual encoder carries embedding rows for every script it was trained on; a Marathi
classifier never looks up most of them. :func:`trim_vocabulary` is a pure re-indexing, told as
five stages, each in its own module:

1. :mod:`~blockprune.vocab.vocabulary`: read the tokenizer's tokenizer.json (every id, its piece).
2. :mod:`~blockprune.vocab.corpus`: encode the corpus once with the original tokenizer.
3. :mod:`~blockprune.vocab.keep`: decide which ids to keep (special tokens, the corpus' pieces,
   extras, script characters, and what the tokenizer model needs: :mod:`~blockprune.vocab.rules`).
4. :mod:`~blockprune.vocab.rebuild`: rebuild tokenizer.json with the kept ids renumbered in their
   original order, and check the corpus tokenizes the same on every text.
5. :mod:`~blockprune.vocab.embeddings`: slice the embedding rows, and check the model's outputs
   on a sample are unchanged.

Folder to folder (and the ``blockprune trim-vocab`` command): :mod:`~blockprune.vocab.folder`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from blockprune.vocab.corpus import corpus_texts, encode_corpus
from blockprune.vocab.embeddings import (
    check_position_padding,
    compare_outputs,
    embedding_params,
    embedding_rows,
    model_outputs,
    remap_config_ids,
    slice_embeddings,
    unique_params,
)
from blockprune.vocab.keep import choose_pieces, count_reasons
from blockprune.vocab.rebuild import check_same_tokens, rebuild_json, wrap_tokenizer
from blockprune.vocab.tokenizer_json import require_fast
from blockprune.vocab.vocabulary import read_vocabulary


@dataclass
class VocabStats:
    """What trimming kept and what it saved. Each kept piece is counted once, under its first reason."""

    tokenizer_model: str
    vocab_size_before: int
    vocab_size_after: int
    embedding_rows_before: int
    embedding_rows_after: int
    embedding_params_before: int
    embedding_params_after: int
    model_params_before: int
    model_params_after: int
    num_texts: int
    num_corpus_tokens: int
    corpus_unk_rate: float
    kept_by_reason: dict[str, int] = field(default_factory=dict)
    output_embeddings: str = "none"  # "none", "tied" or "untied"
    verified_texts: int = 0
    verified_outputs: int = 0
    max_abs_output_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["embedding_params_saved"] = self.embedding_params_before - self.embedding_params_after
        d["model_params_saved"] = self.model_params_before - self.model_params_after
        d["model_size_fraction"] = (
            self.model_params_after / self.model_params_before if self.model_params_before else None
        )
        return d


def trim_vocabulary(
    model: nn.Module,
    tokenizer: Any,
    corpus: Iterable[str],
    *,
    keep_script_chars: bool = False,
    extra_tokens: Iterable[str] = (),
    verify_samples: int = 16,
) -> tuple[nn.Module, Any, VocabStats]:
    """Trim ``tokenizer`` and the embeddings of ``model`` to the pieces ``corpus`` needs.

    ``model`` is edited in place (its embedding rows are sliced) and returned; the returned
    tokenizer is a new ``PreTrainedTokenizerFast``. ``extra_tokens`` are exact pieces of the
    vocabulary to keep. ``verify_samples`` texts are run through the model before and after to
    check the outputs agree (0 skips it); token ids are checked on every corpus text.
    """
    backend = require_fast(tokenizer)
    texts = corpus_texts(corpus)
    vocab = read_vocabulary(backend)
    rows_before = embedding_rows(model, vocab.size)

    encoded = encode_corpus(vocab, texts)
    reason_of = choose_pieces(
        vocab, tokenizer, model.config, encoded, texts, extra_tokens=extra_tokens, keep_script_chars=keep_script_chars
    )
    keep = sorted(reason_of)
    new_id = {old: new for new, old in enumerate(keep)}
    check_position_padding(model, new_id)

    new_data, new_json = rebuild_json(vocab, new_id)
    check_same_tokens(vocab, new_data, new_json, new_id, texts, encoded)
    encoded.ids.clear()  # the corpus ids are no longer needed; free them before the model work
    new_tokenizer = wrap_tokenizer(tokenizer, new_json, len(keep))

    sample = texts[: max(0, verify_samples)]
    before = model_outputs(model, tokenizer, sample) if sample else None
    emb_params_before, params_before = embedding_params(model), unique_params(model)
    tie_state = slice_embeddings(model, keep, new_id)
    remap_config_ids(model.config, new_id)
    max_diff = (
        compare_outputs(before, model_outputs(model, new_tokenizer, sample), rows_before, keep) if sample else None
    )

    stats = VocabStats(
        tokenizer_model=vocab.kind,
        vocab_size_before=vocab.size,
        vocab_size_after=len(keep),
        embedding_rows_before=rows_before,
        embedding_rows_after=model.get_input_embeddings().weight.shape[0],
        embedding_params_before=emb_params_before,
        embedding_params_after=embedding_params(model),
        model_params_before=params_before,
        model_params_after=unique_params(model),
        num_texts=len(texts),
        num_corpus_tokens=encoded.n_tokens,
        corpus_unk_rate=encoded.unk_rate,
        kept_by_reason=count_reasons(reason_of),
        output_embeddings=tie_state,
        verified_texts=len(texts),
        verified_outputs=len(sample),
        max_abs_output_diff=max_diff,
    )
    return model, new_tokenizer, stats

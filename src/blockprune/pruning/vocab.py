"""Vocabulary trimming: keep only the word pieces a corpus needs, and the embedding rows for them.

A multilingual encoder carries embedding rows for every script it was trained on; a Marathi
classifier never looks up most of them. Trimming keeps

- the special tokens and every added token (and the ids the model config names: pad, bos, ...);
- every piece the tokenizer produces on the corpus;
- optionally (``keep_script_chars``) every single-character piece, in its plain and its
  word-boundary forms (``▁x`` / ``##x``), of the Unicode scripts seen in the corpus, so that
  unseen words of the same script fall back to characters instead of the unknown token;
- ``extra_tokens`` given by the caller;
- what the tokenizer model needs to reproduce the corpus exactly: for BPE the parts of every
  merge that builds a kept piece (recursively), for byte-level BPE the 256-symbol byte alphabet,
  for byte-fallback models the ``<0xNN>`` pieces, and for Unigram the lowest-scoring piece
  (the unknown-token score is derived from it).

It is a pure re-indexing: on the corpus the trimmed tokenizer produces the same token strings,
and the model gives the same outputs, because the kept rows are copied unchanged and the ids
are renumbered in their original order. Why the tokenization cannot change:

- WordPiece takes the longest matching piece at each position; every piece it took is kept
  and no longer piece was added, so it takes the same one.
- BPE applies the lowest-ranked applicable merge; every merge it applied on a corpus word is
  kept (with its relative rank), and no other merge was added.
- Unigram picks the best-scoring segmentation; every node of the new lattice is a node of the
  old one with the same score, except unknown-token nodes where a single-character piece was
  removed, and those score below the removed piece (``min_score - 10``, ``min_score`` kept).

Both claims are also checked in code on every corpus text (token ids) and on a sample
(model outputs).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import unicodedata
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn

from blockprune.atomic import atomic_path
from blockprune.errors import BlockpruneError, ConfigError, DataError

try:  # a dependency of transformers; only used to name the Unicode script of a character
    import regex as _regex
except ImportError:  # pragma: no cover - transformers requires it
    _regex = None

__all__ = [
    "VocabStats",
    "trim_vocabulary",
    "trim_vocabulary_folder",
    "unk_rate",
    "changed_tokenization_rate",
    "read_text_column",
]

SUPPORTED_MODELS = ("WordPiece", "BPE", "Unigram", "WordLevel")
# Config fields that hold token ids (an int or a list of ints) and must follow the re-indexing.
CONFIG_ID_KEYS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "mask_token_id",
    "unk_token_id",
    "decoder_start_token_id",
)
MAX_UNK_FRACTION = 0.5
_CHUNK = 2048  # texts per encode_batch call
REASONS = (
    "special",
    "corpus",
    "extra",
    "script_chars",
    "bpe_merge_parts",
    "byte_alphabet",
    "byte_fallback",
    "unigram_min_score",
)


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


# --------------------------------------------------------------------------------------------
# tokenizer.json inspection


def _require_fast(tokenizer: Any) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is None:
        raise BlockpruneError(
            f"vocabulary trimming needs a fast tokenizer (one backed by tokenizer.json), but got "
            f"{type(tokenizer).__name__}, a slow (Python) tokenizer. Load it with "
            f"AutoTokenizer.from_pretrained(..., use_fast=True), or convert it once with "
            f"transformers' convert_slow_tokenizer and save tokenizer.json next to the model."
        )
    return backend


def _walk(node: Any, type_name: str) -> list[dict]:
    """All sub-dicts of a tokenizer.json component whose ``type`` is ``type_name``."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == type_name:
            found.append(node)
        for v in node.values():
            found.extend(_walk(v, type_name))
    elif isinstance(node, list):
        for v in node:
            found.extend(_walk(v, type_name))
    return found


def _id_to_piece(data: dict) -> dict[int, str]:
    """Every id of the tokenizer (model vocabulary and added tokens) and its piece."""
    model = data["model"]
    kind = model["type"]
    if kind == "Unigram":
        pieces = {i: entry[0] for i, entry in enumerate(model["vocab"])}
    else:
        pieces = {int(i): p for p, i in model["vocab"].items()}
    for tok in data.get("added_tokens") or []:
        pieces[int(tok["id"])] = tok["content"]
    return pieces


def _model_unk_id(data: dict, piece_to_id: dict[str, int]) -> int | None:
    model = data["model"]
    if model["type"] == "Unigram":
        return model.get("unk_id")
    unk = model.get("unk_token")
    return piece_to_id.get(unk) if unk is not None else None


def _processor_ids(node: Any) -> list[int]:
    """Token ids named by a post-processor (TemplateProcessing, Bert/RobertaProcessing, Sequence)."""
    ids: list[int] = []
    if not isinstance(node, dict):
        return ids
    kind = node.get("type")
    if kind == "TemplateProcessing":
        for spec in (node.get("special_tokens") or {}).values():
            ids.extend(int(i) for i in spec.get("ids", []))
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if node.get(key) is not None:
                ids.append(int(node[key][1]))
    elif kind == "Sequence":
        for sub in node.get("processors", []):
            ids.extend(_processor_ids(sub))
    return ids


def _remap_processor(node: Any, new_id: dict[int, int]) -> None:
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "TemplateProcessing":
        for spec in (node.get("special_tokens") or {}).values():
            spec["ids"] = [new_id[int(i)] for i in spec.get("ids", [])]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if node.get(key) is not None:
                node[key] = [node[key][0], new_id[int(node[key][1])]]
    elif kind == "Sequence":
        for sub in node.get("processors", []):
            _remap_processor(sub, new_id)


def _markers(data: dict) -> tuple[list[str], list[str]]:
    """Word-boundary prefixes and suffixes a piece may carry (``▁``, ``##``, ``</w>``)."""
    model = data["model"]
    prefixes, suffixes = [], []
    for node in _walk(data.get("pre_tokenizer"), "Metaspace"):
        prefixes.append(node.get("replacement", "\u2581"))
    if model.get("continuing_subword_prefix"):
        prefixes.append(model["continuing_subword_prefix"])
    if model.get("end_of_word_suffix"):
        suffixes.append(model["end_of_word_suffix"])
    return sorted(set(prefixes), key=len, reverse=True), sorted(set(suffixes), key=len, reverse=True)


def _strip_markers(piece: str, prefixes: Sequence[str], suffixes: Sequence[str]) -> str:
    for p in prefixes:
        if piece.startswith(p):
            piece = piece[len(p) :]
            break
    for s in suffixes:
        if piece.endswith(s):
            piece = piece[: -len(s)]
            break
    return piece


def _is_byte_level(data: dict) -> bool:
    return bool(_walk(data.get("pre_tokenizer"), "ByteLevel"))


def _bytes_to_unicode() -> list[str]:
    """The GPT-2 byte-level alphabet: one printable character per byte value."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


# --------------------------------------------------------------------------------------------
# Unicode scripts


@functools.lru_cache(maxsize=None)
def _script_pattern(name: str):
    try:
        return _regex.compile(rf"\p{{Script={name}}}")
    except Exception:  # unknown property value
        return None


@functools.lru_cache(maxsize=None)
def script_key(ch: str) -> str:
    """A label for the Unicode script of one character.

    Letters and marks get their script name (``Devanagari``, ``Latin``). Characters shared by
    scripts (punctuation, digits, symbols: script ``Common``/``Inherited``) are grouped by their
    128-code-point page instead (``Common/U+2000`` is general punctuation), so that seeing a
    comma keeps other ASCII punctuation, not every emoji and box-drawing character.
    """
    page = f"U+{ord(ch) & ~0x7F:04X}"
    if _regex is not None:
        for shared in ("Common", "Inherited"):
            if _script_pattern(shared).match(ch):
                return f"{shared}/{page}"
    try:
        words = unicodedata.name(ch).split()
    except ValueError:  # unnamed: private use, unassigned, controls
        return f"Unnamed/{page}"
    if _regex is not None:
        for n in range(1, min(3, len(words)) + 1):
            pattern = _script_pattern("_".join(words[:n]))
            if pattern is not None and pattern.match(ch):
                return "_".join(words[:n]).title()
    cat = unicodedata.category(ch)
    if cat[0] in "PSNZC" and not words[0].isalpha():
        return f"Common/{page}"
    return words[0].title()


# --------------------------------------------------------------------------------------------
# encoding helpers


def _fresh_backend(tokenizer_json: str):
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer_json)
    backend.no_padding()
    backend.no_truncation()
    return backend


def _encodings(backend, texts: Sequence[str]) -> Iterator:
    """Encodings (with special tokens) of ``texts``, in chunks, so a large corpus is never held twice."""
    for start in range(0, len(texts), _CHUNK):
        yield from backend.encode_batch(list(texts[start : start + _CHUNK]), add_special_tokens=True)


def _clean_corpus(corpus: Iterable[str]) -> list[str]:
    if isinstance(corpus, str):
        raise BlockpruneError("corpus must be an iterable of texts, not a single string; wrap it in a list")
    texts = []
    for t in corpus:
        if t is None:
            continue
        if not isinstance(t, str):
            raise BlockpruneError(f"corpus items must be strings, got {type(t).__name__}: {t!r:.80}")
        if t.strip():
            texts.append(t)
    return texts


# --------------------------------------------------------------------------------------------
# model surgery


def _unique_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _embedding_params(model: nn.Module) -> int:
    seen, total = set(), 0
    mods = [model.get_input_embeddings()]
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        mods.append(out)
    for m in mods:
        for p in (getattr(m, "weight", None), getattr(m, "bias", None)):
            if p is not None and p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                total += p.numel()
    return total


def _slice_embeddings(model: nn.Module, keep: list[int], new_id: dict[int, int]) -> str:
    """Keep rows ``keep`` (old ids, in order) of the input and output embeddings. Returns the tie state."""
    emb = model.get_input_embeddings()
    old_w = emb.weight
    old_rows = old_w.shape[0]
    idx = torch.tensor(keep, dtype=torch.long, device=old_w.device)
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out_w = getattr(out, "weight", None) if out is not None else None
    tied = out_w is not None and out_w.data_ptr() == old_w.data_ptr()

    def sliced(p: nn.Parameter) -> nn.Parameter:
        return nn.Parameter(p.detach().index_select(0, idx).clone(), requires_grad=p.requires_grad)

    # (data_ptr, shape) of an old parameter -> its replacement; every module that holds a parameter
    # sharing that storage (ties: decoder.weight / word_embeddings.weight, decoder.bias / bias)
    # gets the same new parameter, so ties survive.
    replace: dict[tuple[int, tuple], nn.Parameter] = {}
    new_w = sliced(old_w)
    replace[(old_w.data_ptr(), tuple(old_w.shape))] = new_w
    state = "none"
    if out is not None and out_w is not None:
        if tied:
            state = "tied"
        elif out_w.shape[0] == old_rows:
            replace[(out_w.data_ptr(), tuple(out_w.shape))] = sliced(out_w)
            state = "untied"
        out_b = getattr(out, "bias", None)
        if out_b is not None and out_b.dim() == 1 and out_b.shape[0] == old_rows:
            replace[(out_b.data_ptr(), tuple(out_b.shape))] = sliced(out_b)

    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            new = replace.get((p.data_ptr(), tuple(p.shape)))
            if new is not None:
                module._parameters[name] = new

    n = len(keep)
    emb.num_embeddings = n
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = new_id.get(emb.padding_idx)
    if out is not None and state != "none":
        if hasattr(out, "out_features"):
            out.out_features = n
        if hasattr(out, "num_embeddings"):
            out.num_embeddings = n
    model.config.vocab_size = n
    if state == "tied" and model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise RuntimeError("vocab trimming lost the tie between input and output embeddings")  # a bug
    return state


def _check_position_padding(model: nn.Module, new_id: dict[int, int]) -> None:
    """RoBERTa-style models also use the pad id as the offset of position ids; it must not move."""
    pad = getattr(model.config, "pad_token_id", None)
    if not isinstance(pad, int) or new_id.get(pad, pad) == pad:
        return
    for name, module in model.named_modules():
        if not isinstance(module, nn.Embedding) and getattr(module, "padding_idx", None) == pad:
            raise BlockpruneError(
                f"{name}.padding_idx is the pad token id {pad}, which this model also uses to number "
                f"positions, but trimming would move the pad token to id {new_id[pad]}; keep every id "
                f"below {pad} with extra_tokens, or do not trim this model's vocabulary"
            )


def _first_output(outputs: Any) -> torch.Tensor:
    for key in ("logits", "last_hidden_state"):
        value = getattr(outputs, key, None)
        if isinstance(value, torch.Tensor):
            return value
    return outputs[0]


@torch.no_grad()
def _model_outputs(model: nn.Module, tokenizer: Any, texts: Sequence[str]) -> torch.Tensor:
    device = next(model.parameters()).device
    max_len = min(128, int(getattr(tokenizer, "model_max_length", 128) or 128))
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.eval()
    try:
        return _first_output(model(**batch)).float().cpu()
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# public API


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
    from transformers import PreTrainedTokenizerFast

    backend = _require_fast(tokenizer)
    texts = _clean_corpus(corpus)
    if not texts:
        raise BlockpruneError(
            "the vocabulary-trimming corpus is empty (no non-blank texts); point it at the training "
            "texts of the task (for example the train split's text column)"
        )
    tokenizer_json = backend.to_str()
    data = json.loads(tokenizer_json)
    kind = data["model"]["type"]
    if kind not in SUPPORTED_MODELS:
        raise BlockpruneError(
            f"vocabulary trimming supports tokenizer models {', '.join(SUPPORTED_MODELS)}; this "
            f"tokenizer's tokenizer.json has model type {kind!r}"
        )

    id_to_piece = _id_to_piece(data)
    piece_to_id = {p: i for i, p in id_to_piece.items()}
    vocab_before = max(id_to_piece) + 1
    emb_rows_before = model.get_input_embeddings().weight.shape[0]
    if emb_rows_before < vocab_before:
        raise BlockpruneError(
            f"the model has {emb_rows_before} word-embedding rows but the tokenizer has "
            f"{vocab_before} ids; the tokenizer does not belong to this model"
        )
    unk_id = _model_unk_id(data, piece_to_id)
    added_ids = {int(t["id"]) for t in data.get("added_tokens") or []}

    # ---- encode the corpus with the original tokenizer
    old_ids: list[array] = []  # compact: a corpus may have hundreds of thousands of texts
    produced: set[int] = set()
    n_tokens = n_unk = 0
    for enc in _encodings(_fresh_backend(tokenizer_json), texts):
        old_ids.append(array("l", enc.ids))
        for i, special in zip(enc.ids, enc.special_tokens_mask):
            if special:
                continue
            produced.add(i)
            n_tokens += 1
            n_unk += i == unk_id
    normalizer = (data.get("normalizer") or {}).get("type", "none")
    pre_tok = (data.get("pre_tokenizer") or {}).get("type", "none")
    if n_tokens == 0:
        raise BlockpruneError(
            f"the tokenizer produced no pieces (other than special tokens) on the {len(texts)} corpus "
            f"texts (first: {texts[0]!r:.80}); check that the corpus is the text column, and that the "
            f"tokenizer's normaliser ({normalizer}) and pre-tokeniser ({pre_tok}) keep its characters"
        )
    corpus_unk_rate = n_unk / n_tokens
    if corpus_unk_rate > MAX_UNK_FRACTION:
        unk_texts = [t for t, ids in zip(texts, old_ids) if unk_id in ids][:3]
        raise BlockpruneError(
            f"the corpus does not match this tokenizer: {n_unk} of {n_tokens} pieces "
            f"({corpus_unk_rate:.0%}) are the unknown token {id_to_piece.get(unk_id)!r} "
            f"(examples: {', '.join(repr(t[:60]) for t in unk_texts)}). Check that the corpus is in a "
            f"language and script this model covers, that the file was decoded with the right "
            f"encoding (mojibake), that the text column is the right one, and that the tokenizer "
            f"(normaliser: {normalizer}) is the one the model was trained with."
        )

    # ---- decide what to keep; the first reason a piece is kept under is the one counted
    reason_of: dict[int, str] = {}

    def keep_ids(ids: Iterable[int], reason: str) -> None:
        for i in ids:
            if i is not None and 0 <= i < vocab_before and i in id_to_piece:
                reason_of.setdefault(int(i), reason)

    special = set(added_ids) | set(getattr(tokenizer, "all_special_ids", []) or [])
    special |= set(_processor_ids(data.get("post_processor")))
    if unk_id is not None:
        special.add(unk_id)
    if data.get("padding"):
        special.add(int(data["padding"]["pad_id"]))
    for key in CONFIG_ID_KEYS:
        value = getattr(model.config, key, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, int) and 0 <= v < vocab_before:
                special.add(v)
    keep_ids(sorted(special), "special")
    if not (produced - special):
        raise BlockpruneError(
            f"the tokenizer produced only special tokens on the {len(texts)} corpus texts (first: "
            f"{texts[0]!r:.80}); check the text column and the tokenizer's normaliser ({normalizer})"
        )
    keep_ids(sorted(produced), "corpus")

    extra = list(extra_tokens)
    missing = [t for t in extra if t not in piece_to_id]
    if missing:
        raise ConfigError(
            f"extra_tokens must be pieces of the tokenizer's vocabulary; not found: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. To keep the pieces of a word, add the word to the corpus."
        )
    keep_ids((piece_to_id[t] for t in extra), "extra")

    model_vocab = data["model"]["vocab"]
    model_pieces = [e[0] for e in model_vocab] if kind == "Unigram" else list(model_vocab)
    byte_level = _is_byte_level(data)
    if keep_script_chars and not byte_level:
        prefixes, suffixes = _markers(data)
        seen_scripts = set()
        for i in produced - special:
            for ch in _strip_markers(id_to_piece[i], prefixes, suffixes):
                seen_scripts.add(script_key(ch))
        chosen = []
        for p in model_pieces:
            core = _strip_markers(p, prefixes, suffixes)
            if (len(core) == 1 and script_key(core) in seen_scripts) or (core == "" and p in prefixes):
                chosen.append(piece_to_id[p])
        keep_ids(chosen, "script_chars")

    if data["model"].get("byte_fallback"):
        keep_ids((piece_to_id.get(f"<0x{b:02X}>") for b in range(256)), "byte_fallback")
    if kind == "BPE":
        if byte_level:
            keep_ids((piece_to_id.get(c) for c in _bytes_to_unicode()), "byte_alphabet")
        _close_bpe_merges(data, piece_to_id, reason_of, keep_ids)
    if kind == "Unigram":
        scores = [e[1] for e in model_vocab]
        keep_ids([min(range(len(scores)), key=scores.__getitem__)], "unigram_min_score")

    keep = sorted(reason_of)
    new_id = {old: new for new, old in enumerate(keep)}
    _check_position_padding(model, new_id)
    kept_by_reason = {r: 0 for r in REASONS}
    for r in reason_of.values():
        kept_by_reason[r] += 1

    # ---- rebuild tokenizer.json
    new_data = copy.deepcopy(data)
    model_json = new_data["model"]
    if kind == "Unigram":
        kept_model = [i for i in range(len(model_vocab)) if i in reason_of]
        if [new_id[i] for i in kept_model] != list(range(len(kept_model))):
            raise BlockpruneError("unexpected tokenizer layout: added tokens interleave the Unigram vocabulary")
        model_json["vocab"] = [model_vocab[i] for i in kept_model]
        if model_json.get("unk_id") is not None:
            model_json["unk_id"] = new_id[model_json["unk_id"]]
    else:
        model_json["vocab"] = {p: new_id[i] for p, i in model_vocab.items() if i in reason_of}
        if kind == "BPE":
            model_json["merges"] = _filter_merges(model_json, set(model_json["vocab"]))
    for tok in new_data.get("added_tokens") or []:
        tok["id"] = new_id[int(tok["id"])]
    _remap_processor(new_data.get("post_processor"), new_id)
    if new_data.get("padding"):
        new_data["padding"]["pad_id"] = new_id[int(new_data["padding"]["pad_id"])]
    new_json = json.dumps(new_data, ensure_ascii=False)

    # ---- verify: same ids (re-indexed) and token strings on every corpus text
    new_backend = _fresh_backend(new_json)
    new_pieces = _id_to_piece(new_data)
    bad = [old for old in keep if new_pieces.get(new_id[old]) != id_to_piece[old]]
    if bad:
        raise BlockpruneError(f"internal error: re-indexed vocabulary disagrees at old ids {bad[:5]}")
    for n, (ids, new_enc) in enumerate(zip(old_ids, _encodings(new_backend, texts))):
        old_tokens = [id_to_piece[i] for i in ids]
        if new_enc.ids != [new_id[i] for i in ids] or new_enc.tokens != old_tokens:
            raise BlockpruneError(
                f"internal error: the trimmed tokenizer splits corpus text {n} differently "
                f"({texts[n]!r:.80}): {old_tokens[:20]} -> {new_enc.tokens[:20]}"
            )
    del old_ids

    # ---- the transformers wrapper, with the same special-token roles and settings
    from tokenizers import Tokenizer

    wrapper_kwargs: dict[str, Any] = {}
    for name, value in (getattr(tokenizer, "special_tokens_map", None) or {}).items():
        if value is not None:
            wrapper_kwargs[name] = value
    extra_special = [str(t) for t in getattr(tokenizer, "extra_special_tokens", None) or []]
    if extra_special:
        wrapper_kwargs["extra_special_tokens"] = extra_special
    for name in ("model_max_length", "padding_side", "truncation_side", "clean_up_tokenization_spaces"):
        if hasattr(tokenizer, name):
            wrapper_kwargs[name] = getattr(tokenizer, name)
    if getattr(tokenizer, "model_input_names", None):
        wrapper_kwargs["model_input_names"] = list(tokenizer.model_input_names)
    new_tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(new_json), **wrapper_kwargs)
    if len(new_tokenizer) != len(keep):
        raise BlockpruneError(
            f"internal error: the trimmed tokenizer has {len(new_tokenizer)} ids, expected {len(keep)} "
            f"(a special token of the original is missing from its tokenizer.json?)"
        )

    # ---- slice the model, checking its outputs on a sample
    sample = texts[: max(0, verify_samples)]
    before = _model_outputs(model, tokenizer, sample) if sample else None
    emb_params_before = _embedding_params(model)
    params_before = _unique_params(model)
    tie_state = _slice_embeddings(model, keep, new_id)
    for key in CONFIG_ID_KEYS:
        value = getattr(model.config, key, None)
        if isinstance(value, int) and value in new_id:
            setattr(model.config, key, new_id[value])
        elif isinstance(value, (list, tuple)):
            setattr(model.config, key, [new_id.get(v, v) for v in value])
    # the trimmed tokenizer.json must be loaded as it is, never rebuilt from a slow vocabulary
    model.config.tokenizer_class = "PreTrainedTokenizerFast"
    max_diff = None
    if sample:
        after = _model_outputs(model, new_tokenizer, sample)
        if before.shape[-1] == emb_rows_before and after.shape[-1] == len(keep):
            before = before[..., keep]  # vocabulary logits (a language-model head)
        if before.shape != after.shape:
            raise BlockpruneError(f"internal error: output shape changed {tuple(before.shape)} -> {tuple(after.shape)}")
        max_diff = float((before - after).abs().max())
        if not torch.allclose(before, after, rtol=1e-4, atol=1e-5):
            raise BlockpruneError(f"internal error: trimmed model's outputs differ by up to {max_diff:.3g}")

    stats = VocabStats(
        tokenizer_model=kind,
        vocab_size_before=vocab_before,
        vocab_size_after=len(keep),
        embedding_rows_before=emb_rows_before,
        embedding_rows_after=model.get_input_embeddings().weight.shape[0],
        embedding_params_before=emb_params_before,
        embedding_params_after=_embedding_params(model),
        model_params_before=params_before,
        model_params_after=_unique_params(model),
        num_texts=len(texts),
        num_corpus_tokens=n_tokens,
        corpus_unk_rate=corpus_unk_rate,
        kept_by_reason=kept_by_reason,
        output_embeddings=tie_state,
        verified_texts=len(texts),
        verified_outputs=len(sample),
        max_abs_output_diff=max_diff,
    )
    return model, new_tokenizer, stats


def _merge_parts(merge: Any) -> tuple[str, str]:
    if isinstance(merge, str):
        a, b = merge.split(" ", 1)
        return a, b
    return merge[0], merge[1]


def _merge_result(a: str, b: str, prefix: str | None) -> str:
    # as tokenizers builds it: the continuation prefix of the right part is dropped
    return a + (b[len(prefix) :] if prefix else b)


def _close_bpe_merges(data: dict, piece_to_id: dict[str, int], reason_of: dict[int, str], keep_ids) -> None:
    """Keep the parts of every merge that builds a kept piece, recursively."""
    model = data["model"]
    prefix = model.get("continuing_subword_prefix")
    producers: dict[str, list[tuple[str, str]]] = {}
    for merge in model.get("merges") or []:
        a, b = _merge_parts(merge)
        producers.setdefault(_merge_result(a, b, prefix), []).append((a, b))
    id_to = {i: p for p, i in piece_to_id.items()}
    stack = [id_to[i] for i in reason_of if i in id_to]
    while stack:
        piece = stack.pop()
        for a, b in producers.get(piece, ()):
            for part in (a, b):
                i = piece_to_id.get(part)
                if i is not None and i not in reason_of:
                    keep_ids([i], "bpe_merge_parts")
                    stack.append(part)


def _filter_merges(model_json: dict, vocab: set[str]) -> list:
    prefix = model_json.get("continuing_subword_prefix")
    kept = []
    for merge in model_json.get("merges") or []:
        a, b = _merge_parts(merge)
        if a in vocab and b in vocab and _merge_result(a, b, prefix) in vocab:
            kept.append(merge)
    return kept


def _token_lists(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []


def unk_rate(tokenizer: Any, texts: Iterable[str]) -> float:
    """Fraction of the tokens produced on ``texts`` (special tokens excluded) that are the unknown token."""
    texts = _clean_corpus(texts)
    unk = getattr(tokenizer, "unk_token_id", None)
    total = hits = 0
    for ids in _token_lists(tokenizer, texts):
        total += len(ids)
        if unk is not None:
            hits += sum(1 for i in ids if i == unk)
    return hits / total if total else 0.0


def changed_tokenization_rate(orig_tok: Any, new_tok: Any, texts: Iterable[str]) -> float:
    """Fraction of ``texts`` that the two tokenizers split into different token strings."""
    texts = _clean_corpus(texts)
    if not texts:
        return 0.0
    old = [orig_tok.convert_ids_to_tokens(ids) for ids in _token_lists(orig_tok, texts)]
    new = [new_tok.convert_ids_to_tokens(ids) for ids in _token_lists(new_tok, texts)]
    return sum(a != b for a, b in zip(old, new)) / len(texts)


# --------------------------------------------------------------------------------------------
# folder-to-folder entry point


def read_text_column(path: str | os.PathLike, text_column: str = "Text") -> list[str]:
    """The non-blank texts of one .csv / .tsv / .jsonl / .json / .txt file (repeated header rows dropped)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: corpus file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if suffix in (".csv", ".tsv", ".tab"):
            sep = "," if suffix == ".csv" else "\t"
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            try:
                frame = pd.read_json(path, lines=True, dtype=False)
            except ValueError:
                frame = pd.read_json(path, dtype=False)
        else:
            raise DataError(f"{path}: unsupported corpus file type {suffix!r}; use .csv, .tsv, .jsonl, .json or .txt")
    except (UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read as {suffix} ({exc}); check the file's format and UTF-8 encoding") from exc
    if text_column not in frame.columns:
        raise DataError(
            f"{path}: no column {text_column!r}; columns are {list(frame.columns)}. Set text_column to one of them."
        )
    values = frame[text_column].astype(str).tolist()
    return [v for v in values if v.strip() and v.strip() != text_column]


def _name_fast_class(path: Path) -> None:
    """Name the class transformers 4.x and 5.x both load tokenizer.json with, unchanged."""
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _load_model(model_dir: str | os.PathLike):
    """The checkpoint's own class (keeps any head: classifier, MLM), in float32."""
    import transformers
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    saved_dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    cls = None
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            break
    model = (cls or AutoModel).from_pretrained(model_dir, dtype=torch.float32)
    if isinstance(saved_dtype, str):
        saved_dtype = getattr(torch, saved_dtype, None)
    return model, saved_dtype


def trim_vocabulary_folder(
    model_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    corpus_files: list[str],
    text_column: str = "Text",
    heldout_files: Sequence[str] = (),
    keep_script_chars: bool = False,
) -> dict[str, Any]:
    """Trim the model in ``model_dir`` on the texts of ``corpus_files``; write it to ``out_dir``.

    The model is loaded as the class its config names (its head is kept), trimmed in float32,
    and saved in the dtype it was stored in. ``out_dir`` is written atomically: a temporary
    sibling folder, renamed at the end. Returns the stats (also written to
    ``out_dir/vocab_trim.json``), with the unknown-token rate and the fraction of texts split
    differently on ``heldout_files``.
    """
    from transformers import AutoTokenizer

    src, dst = Path(model_dir).resolve(), Path(out_dir).resolve()
    if dst == src or src.is_relative_to(dst):
        raise ConfigError(f"out_dir {out_dir} would replace the model folder {model_dir}; choose another folder")
    if not corpus_files:
        raise ConfigError("corpus_files is empty; give the training files whose texts the vocabulary must cover")
    texts = [t for f in corpus_files for t in read_text_column(f, text_column)]
    heldout = [t for f in heldout_files for t in read_text_column(f, text_column)]

    original = AutoTokenizer.from_pretrained(model_dir)  # trim_vocabulary returns a new tokenizer
    model, saved_dtype = _load_model(model_dir)
    model, new_tokenizer, stats = trim_vocabulary(model, original, texts, keep_script_chars=keep_script_chars)

    result = stats.to_dict()
    result.update(
        model_dir=str(model_dir),
        out_dir=str(out_dir),
        corpus_files=[str(f) for f in corpus_files],
        heldout_files=[str(f) for f in heldout_files],
        keep_script_chars=keep_script_chars,
        saved_dtype=str(saved_dtype or torch.float32).replace("torch.", ""),
    )
    if heldout:
        result["heldout_texts"] = len(heldout)
        result["heldout_unk_rate_before"] = unk_rate(original, heldout)
        result["heldout_unk_rate"] = unk_rate(new_tokenizer, heldout)
        result["heldout_changed_tokenization_rate"] = changed_tokenization_rate(original, new_tokenizer, heldout)

    if isinstance(saved_dtype, torch.dtype) and saved_dtype in (torch.float16, torch.bfloat16):
        model = model.to(saved_dtype)  # rows were copied, so this is lossless
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        new_tokenizer.save_pretrained(tmp)
        _name_fast_class(tmp / "tokenizer_config.json")
        check = AutoTokenizer.from_pretrained(tmp)
        sample = texts[:256]
        if check(sample)["input_ids"] != new_tokenizer(sample)["input_ids"]:
            raise BlockpruneError(
                f"internal error: the saved tokenizer in {out_dir} does not reload to the trimmed one"
            )
        (tmp / "vocab_trim.json").write_text(
            json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
    return result

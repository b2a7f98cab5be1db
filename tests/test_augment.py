"""Teacher-labelled augmentation: word perturbations by hand, unlabelled batches, the teacher's labels."""

from __future__ import annotations

import random

import pytest
import torch

from blockprune.augment import Perturbation, TeacherAugmentation, pad, perturb, split_words, word_starts
from blockprune.distill import AUGMENTED, TEACHER_LOGITS, Distillation
from blockprune.errors import ConfigError

# ids: 0 <s>, 1 </s>, 2 <pad>, 3 <mask>; 10-19 word starts ("▁x"), 20-29 continuations
STARTS = [False] * 10 + [True] * 10 + [False] * 10
SPECIAL = {0, 1, 2, 3}
# <s> [10 20] [11] [12 21 22] [13] </s>: four words
IDS = [0, 10, 20, 11, 12, 21, 22, 13, 1]


def test_words_are_grouped_from_the_pieces():
    assert split_words(IDS, STARTS, SPECIAL) == [[0], [10, 20], [11], [12, 21, 22], [13], [1]]


@pytest.mark.parametrize(
    ("p", "want"),
    [
        (Perturbation(0, 0, 0), IDS),
        (Perturbation(swap=0, delete=0, mask=1), [0, 3, 3, 3, 3, 3, 3, 3, 1]),  # every piece of every word
        (Perturbation(swap=1, delete=0, mask=0), [0, 11, 10, 20, 13, 12, 21, 22, 1]),  # pairs swapped, specials fixed
        (Perturbation(swap=0, delete=1, mask=0), IDS),  # deleting every word would leave nothing: kept
    ],
)
def test_perturbations_by_hand(p, want):
    assert perturb(IDS, STARTS, SPECIAL, 3, p, random.Random(0)) == want


def test_deletion_drops_whole_words_only():
    rng = random.Random(1)
    for _ in range(50):
        out = perturb(IDS, STARTS, SPECIAL, 3, Perturbation(swap=0, delete=0.5, mask=0), rng)
        words = split_words(out, STARTS, SPECIAL)
        assert words[0] == [0] and words[-1] == [1]
        assert all(w in [[10, 20], [11], [12, 21, 22], [13]] for w in words[1:-1])


class _Tok:
    """The few tokenizer facts augmentation uses (a real one is exercised in the e5 test)."""

    mask_token_id, pad_token_id, unk_token_id = 3, 2, 4
    all_special_ids = [0, 1, 2, 3]

    def get_vocab(self):
        return {f"▁w{i}" if STARTS[i] else f"p{i}": i for i in range(30)}

    def __call__(self, texts, truncation=True, max_length=8):
        return {"input_ids": [[0, *[10 + int(c) for c in t][: max_length - 2], 1] for t in texts]}


def test_word_starts_from_a_sentencepiece_vocabulary():
    assert word_starts(_Tok()) == STARTS


def test_extra_inputs_are_padded_copies_plus_cycled_unlabelled_texts():
    aug = TeacherAugmentation(
        copies=2, perturbation=Perturbation(0, 0, 1), unlabelled_texts=["1", "23", "4"], batch_size=2
    )
    aug.setup(_Tok())
    batch = pad([IDS, [0, 13, 1]], pad_id=2)
    extra = aug.extra_inputs(batch, step=0)
    assert extra["input_ids"].shape[0] == 2 * 2 + 2
    assert extra["input_ids"][0].tolist() == [0, 3, 3, 3, 3, 3, 3, 3, 1]
    assert extra["input_ids"][1].tolist() == [0, 3, 1, 2, 2, 2, 2, 2, 2]  # padding is not a word
    assert extra["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    seen = []
    for step in range(3):  # 3 steps x 2 texts = two passes over the 3 texts, each pass complete
        rows = aug.extra_inputs(batch, step)["input_ids"][4:]
        seen += [tuple(t for t in r.tolist() if t != 2) for r in rows]
    assert sorted(seen[:3]) == sorted(seen[3:]) == [(0, 11, 1), (0, 12, 13, 1), (0, 14, 1)]
    assert aug.extra_inputs(batch, 5)["input_ids"].tolist() == aug.extra_inputs(batch, 5)["input_ids"].tolist()


def test_unlabelled_files_are_read_with_the_data_reader(tmp_path):
    file = tmp_path / "more.csv"
    file.write_text("id,Text\n1,पहिली बातमी\n2,\n3,दुसरी बातमी\n", encoding="utf-8")
    kd = Distillation("t", unlabelled_files=[str(file)], augment={"unlabelled_batch_size": 4})
    assert kd.augmentation.texts == ["पहिली बातमी", "दुसरी बातमी"]
    assert Distillation("t").augmentation is None  # off by default
    with pytest.raises(ConfigError, match="unknown keys"):
        Distillation("t", augment={"copies": 1, "shuffle": 0.1})
    with pytest.raises(ConfigError, match="probability"):
        Distillation("t", augment={"copies": 1, "mask": 1.5})


def test_callback_labels_the_extra_examples_with_the_teacher(e5_dir):
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from blockprune.models import build_tiny_classifier

    labels = {"a": 0, "b": 1}
    teacher = build_tiny_classifier(str(e5_dir), 2, {v: k for k, v in labels.items()}, labels, seed=1).eval()
    tok = AutoTokenizer.from_pretrained(str(e5_dir))
    kd = Distillation("t", augment={"copies": 1}, unlabelled_files=[], seed=3)
    kd.teacher, kd.tokenizer = teacher, tok
    kd.augmentation.setup(tok)
    batch = dict(tok(["मी घरी जातो आहे", "आज पाऊस पडला"], padding=True, return_tensors="pt"))
    trainer = SimpleNamespace(global_step=7, precision_plugin=SimpleNamespace(forward_context=torch.no_grad))
    kd.on_train_batch_start(trainer, None, batch, 0)
    extra = batch[AUGMENTED]
    with torch.no_grad():
        want = teacher(input_ids=extra["input_ids"], attention_mask=extra["attention_mask"]).logits
    torch.testing.assert_close(extra[TEACHER_LOGITS], want)
    assert extra["input_ids"].shape[0] == 2  # one perturbed copy of each text
    assert torch.equal(extra["input_ids"][:, 0], batch["input_ids"][:, 0])  # <s> stays in place

"""Distillation: the loss against a hand computation, a frozen teacher, refused teachers."""

from __future__ import annotations

import math

import pytest
import torch

from blockprune.distill import (
    AUGMENTED,
    TEACHER_ATTENTIONS,
    TEACHER_HIDDEN,
    TEACHER_LOGITS,
    Distillation,
    attention_map_loss,
    distillation_loss,
    hidden_state_loss,
    layer_map,
    model_inputs,
)
from blockprune.errors import ConfigError
from blockprune.models import build_tiny_classifier

LABELS = {"a": 0, "b": 1, "c": 2}


def test_distillation_loss_equals_a_hand_computation():
    student = torch.tensor([[1.0, 2.0, 0.5]])
    teacher = torch.tensor([[0.2, 3.0, -1.0]])
    t = 2.0

    def softmax(x):
        e = [math.exp(v / t) for v in x]
        return [v / sum(e) for v in e]

    p_t, p_s = softmax(teacher[0].tolist()), softmax(student[0].tolist())
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    assert distillation_loss(student, teacher, t).item() == pytest.approx(t * t * kl, rel=1e-6)

    kd = Distillation("unused", temperature=t, alpha=0.3)
    labels = torch.tensor([1])
    ce = -math.log(math.exp(2.0) / sum(math.exp(v) for v in (1.0, 2.0, 0.5)))
    parts = kd.loss(student, teacher, labels)
    assert parts["loss"].item() == pytest.approx(0.3 * t * t * kl + 0.7 * ce, rel=1e-6)
    assert parts["ce_loss"].item() == pytest.approx(ce, rel=1e-6)


@pytest.fixture
def teacher_dir(tmp_path, e5_dir):
    model = build_tiny_classifier(str(e5_dir), 3, {v: k for k, v in LABELS.items()}, LABELS, seed=1)
    model.save_pretrained(tmp_path / "teacher")
    return tmp_path / "teacher"


def test_teacher_is_frozen_in_eval_mode_and_gets_no_gradient(teacher_dir, e5_dir):
    student = build_tiny_classifier(str(e5_dir), 3, {v: k for k, v in LABELS.items()}, LABELS, seed=2)
    kd = Distillation(str(teacher_dir))
    teacher = kd.load_teacher(student)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    batch = {"input_ids": torch.randint(5, 500, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    t_logits = teacher(**batch).logits  # no torch.no_grad here: freezing alone must keep the teacher fixed
    assert torch.equal(t_logits, teacher(**batch).logits)  # eval mode: no dropout
    # an optimiser that (wrongly) holds the teacher's parameters too takes a large step
    optimiser = torch.optim.SGD([*student.parameters(), *teacher.parameters()], lr=10.0)
    student_before = [p.detach().clone() for p in student.parameters()]
    loss = kd.loss(student(**batch).logits, t_logits, torch.tensor([0, 1, 2, 0]))["loss"]
    loss.backward()
    optimiser.step()
    assert any(not torch.equal(b, p) for b, p in zip(student_before, student.parameters()))  # the step happened
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_teacher_with_other_labels_is_refused(teacher_dir, e5_dir):
    other = {"x": 0, "y": 1, "z": 2}
    student = build_tiny_classifier(str(e5_dir), 3, {v: k for k, v in other.items()}, other)
    with pytest.raises(ConfigError, match="predicts labels"):
        Distillation(str(teacher_dir)).load_teacher(student)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"teacher": None}, "needs a fine-tuned teacher"),
        ({"teacher": "t", "temperature": 0.0}, "distill.temperature"),
        ({"teacher": "t", "alpha": 1.5}, "distill.alpha"),
    ],
)
def test_bad_distillation_settings_fail_early(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Distillation(**kwargs)


# --- intermediate-layer distillation ------------------------------------------------------


def test_hidden_state_loss_equals_a_hand_computation_over_real_tokens():
    # one layer plus embeddings, batch of 2, hidden width 2; the second sequence has a pad token
    mask = torch.tensor([[1, 1], [1, 0]])
    emb = torch.zeros(2, 2, 2)
    student = (emb, torch.tensor([[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [99.0, -99.0]]]))
    teacher = (emb + 7, torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]]))
    # squared errors of the 3 real tokens: (1+0) + (1+0) + (4+1) = 7, over 3 tokens x 2 units
    assert hidden_state_loss(student, teacher, mask).item() == pytest.approx(7 / 6)


def test_hidden_state_loss_averages_the_mapped_layers():
    mask = torch.ones(1, 1)
    s = tuple(torch.full((1, 1, 1), v) for v in (0.0, 1.0, 2.0))  # student: embeddings + 2 layers
    t = tuple(torch.full((1, 1, 1), v) for v in (0.0, 0.0, 0.0, 0.0, 5.0))  # teacher: 4 layers
    assert layer_map(2, 4) == [2, 4] and layer_map(12, 12) == list(range(1, 13))
    # student layer 1 -> teacher layer 2 (0): error 1; student layer 2 -> teacher layer 4 (5): error 9
    assert hidden_state_loss(s, t, mask).item() == pytest.approx((1 + 9) / 2)
    with pytest.raises(ConfigError, match="multiple"):
        layer_map(3, 4)


def test_attention_map_loss_equals_a_hand_computation():
    mask = torch.tensor([[1, 0]])  # query row 2 is padding
    s = (torch.tensor([[[[0.5, 0.5], [9.0, 9.0]]]]),)  # (batch 1, 1 head, 2 queries, 2 keys)
    t = (torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]),)
    assert attention_map_loss(s, t, mask).item() == pytest.approx((0.25 + 0.25) / 2)


def _batch_with_teacher(student, teacher, kd, extra=None):
    batch = {
        "input_ids": torch.tensor([[2, 7, 9, 3], [2, 8, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "labels": torch.tensor([0, 2]),
    }
    with torch.no_grad():
        out = teacher(**model_inputs(batch), output_hidden_states=True, output_attentions=True)
    batch[TEACHER_LOGITS], batch[TEACHER_HIDDEN], batch[TEACHER_ATTENTIONS] = (
        out.logits,
        out.hidden_states,
        out.attentions,
    )
    if extra is not None:
        with torch.no_grad():
            extra[TEACHER_LOGITS] = teacher(**extra).logits
        batch[AUGMENTED] = extra
    return batch


def _tiny(e5_dir, seed):
    return build_tiny_classifier(str(e5_dir), 3, {v: k for k, v in LABELS.items()}, LABELS, seed=seed)


def test_training_loss_adds_the_weighted_parts(e5_dir):
    student, teacher = _tiny(e5_dir, 2).eval(), _tiny(e5_dir, 1).eval()  # no dropout: the same forward twice
    for m in (student, teacher):
        m.set_attn_implementation("eager")
    kd = Distillation("unused", temperature=2.0, alpha=0.4, hidden_weight=3.0, attention_weight=5.0)
    batch = _batch_with_teacher(student, teacher, kd)
    parts = kd.training_loss(student, batch)
    out = student(**model_inputs(batch), output_hidden_states=True, output_attentions=True)
    ce = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
    kl = distillation_loss(out.logits, batch[TEACHER_LOGITS], 2.0)
    hid = hidden_state_loss(out.hidden_states, batch[TEACHER_HIDDEN], batch["attention_mask"])
    att = attention_map_loss(out.attentions, batch[TEACHER_ATTENTIONS], batch["attention_mask"])
    assert hid.item() > 0 and att.item() > 0
    want = 0.4 * kl + 0.6 * ce + 3.0 * hid + 5.0 * att
    assert parts["loss"].item() == pytest.approx(want.item(), rel=1e-5)
    assert parts["hidden_loss"].item() == pytest.approx(hid.item(), rel=1e-5)


def test_augmented_examples_get_kl_only_weighted_per_example(e5_dir):
    student, teacher = _tiny(e5_dir, 2).eval(), _tiny(e5_dir, 1).eval()  # no dropout: the same forward twice
    kd = Distillation("unused", temperature=1.0, alpha=0.5)
    extra = {
        "input_ids": torch.tensor([[2, 5, 3], [2, 6, 3], [2, 11, 3]]),
        "attention_mask": torch.ones(3, 3, dtype=torch.long),
    }
    batch = _batch_with_teacher(student, teacher, kd, extra)
    parts = kd.training_loss(student, batch)
    logits, aug_logits = student(**model_inputs(batch)).logits, student(**extra).logits

    def kl_each(s, t):
        return torch.nn.functional.kl_div(s.log_softmax(-1), t.log_softmax(-1), reduction="none", log_target=True).sum(
            -1
        )

    kl_all = torch.cat([kl_each(logits, batch[TEACHER_LOGITS]), kl_each(aug_logits, extra[TEACHER_LOGITS])]).mean()
    ce = torch.nn.functional.cross_entropy(logits, batch["labels"])  # the 2 labelled examples only
    assert parts["kd_loss"].item() == pytest.approx(kl_all.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx((0.5 * kl_all + 0.5 * ce).item(), rel=1e-5)

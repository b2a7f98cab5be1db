"""Distillation: the loss against a hand computation, a frozen teacher, refused teachers."""

from __future__ import annotations

import math

import pytest
import torch

from blockprune.distill import Distillation, distillation_loss
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
    with torch.no_grad():
        t_logits = teacher(**batch).logits
    loss = kd.loss(student(**batch).logits, t_logits, torch.tensor([0, 1, 2, 0]))["loss"]
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_teacher_with_other_labels_is_refused(teacher_dir, e5_dir):
    other = {"x": 0, "y": 1, "z": 2}
    student = build_tiny_classifier(str(e5_dir), 3, {v: k for k, v in other.items()}, other)
    with pytest.raises(ConfigError, match="predicts labels"):
        Distillation(str(teacher_dir)).load_teacher(student)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"teacher": None}, "needs a fine-tuned teacher"),
    ({"teacher": "t", "temperature": 0.0}, "distill.temperature"),
    ({"teacher": "t", "alpha": 1.5}, "distill.alpha"),
])
def test_bad_distillation_settings_fail_early(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Distillation(**kwargs)

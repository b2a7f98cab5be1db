"""Knowledge distillation (Hinton et al. 2015): the loss formula and the callback that owns the teacher."""

from __future__ import annotations

import torch
from torch import nn

#: Batch key under which the distillation callback hands the teacher's logits to the module.
TEACHER_LOGITS = "teacher_logits"


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch-mean.

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label loss
    when T changes (Hinton et al. 2015, section 2).
    """
    t = temperature
    log_p_student = nn.functional.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = nn.functional.log_softmax(teacher_logits.float() / t, dim=-1)
    return nn.functional.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t

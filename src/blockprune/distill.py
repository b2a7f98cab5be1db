"""Knowledge distillation (Hinton et al. 2015): the loss formula and the callback that owns the teacher."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from blockprune.errors import BlockpruneError, ConfigError

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


@torch.no_grad()
def teacher_fingerprint(model: nn.Module) -> float:
    """Sum of absolute parameter values, in float64: tells a different teacher from the same one."""
    return float(sum(p.detach().double().abs().sum() for p in model.parameters()))


class Distillation(L.Callback):
    """Owns the frozen teacher and hands its logits to the module with every training batch.

    The teacher is the dense fine-tuned model (by default the model pruning started from),
    loaded once, frozen, in eval mode, on the student's device, run under the trainer's
    precision context and without gradients. It is not a submodule of the LightningModule,
    so it is neither optimised nor written into checkpoints.
    """

    def __init__(self, teacher: str | None, temperature: float = 2.0, alpha: float = 0.5) -> None:
        if not teacher:
            raise ConfigError(
                "distill=on needs a fine-tuned teacher: set distill.teacher=<model folder or hub id>, or "
                "init_from=<fine-tuned folder> (the teacher then defaults to it). `make table1` does this for you."
            )
        if temperature <= 0:
            raise ConfigError(f"distill.temperature={temperature} must be > 0 (typical: 1 to 4).")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distill.alpha={alpha} must be in [0, 1]: the weight of the distillation loss.")
        self.teacher_path = str(teacher)
        self.temperature = temperature
        self.alpha = alpha
        self.teacher: nn.Module | None = None
        self.fingerprint: float | None = None

    def load_teacher(self, student: nn.Module, tokenizer: Any = None) -> nn.Module:
        """Load and freeze the teacher; refuse one whose labels or vocabulary differ from the
        student's (compared piece by piece with ``tokenizer`` when the teacher folder has one)."""
        from blockprune.models import load_model

        try:
            teacher = load_model(self.teacher_path) if Path(self.teacher_path).is_dir() else None
        except BlockpruneError as err:
            raise ConfigError(
                f"distill.teacher={self.teacher_path!r} is not a fine-tuned classifier: {err} The teacher defaults to "
                "init_from (else the model itself): fine-tune a dense baseline first and set init_from=<its model "
                "folder> or distill.teacher=<it>."
            ) from err
        if teacher is None:
            from transformers import AutoModelForSequenceClassification

            try:
                teacher = AutoModelForSequenceClassification.from_pretrained(self.teacher_path, dtype=torch.float32)
            except OSError as err:
                raise ConfigError(f"distill.teacher={self.teacher_path!r} cannot be loaded: {err}") from err
        if teacher.config.label2id != student.config.label2id:
            raise ConfigError(
                f"distill.teacher={self.teacher_path!r} predicts labels {sorted(teacher.config.label2id)}, the student "
                f"{sorted(student.config.label2id)}. Fine-tune a dense baseline on this data first and set "
                "distill.teacher=<its outputs/.../model folder>."
            )
        if teacher.config.vocab_size != student.config.vocab_size:
            raise ConfigError(
                f"distill.teacher={self.teacher_path!r} has a vocabulary of {teacher.config.vocab_size} pieces, the "
                f"student {student.config.vocab_size}: they need the same tokenizer."
            )
        if tokenizer is not None and Path(self.teacher_path, "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            theirs, ours = AutoTokenizer.from_pretrained(self.teacher_path).get_vocab(), tokenizer.get_vocab()
            if theirs != ours:
                differ = sum(theirs.get(piece) != i for piece, i in ours.items())
                raise ConfigError(
                    f"distill.teacher={self.teacher_path!r} uses another tokenizer than the student's "
                    f"({differ} pieces have other ids): the teacher would read other tokens. Use a teacher "
                    "fine-tuned from the same base model (model.tokenizer)."
                )
        teacher.eval().requires_grad_(False)
        self.fingerprint = teacher_fingerprint(teacher)
        return teacher

    def loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """alpha * T^2 * KL + (1 - alpha) * CE, with both parts for logging."""
        kd = distillation_loss(student_logits, teacher_logits, self.temperature)
        ce = nn.functional.cross_entropy(student_logits, labels)
        return {"loss": self.alpha * kd + (1 - self.alpha) * ce, "kd_loss": kd, "ce_loss": ce}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.teacher is None:
            self.teacher = self.load_teacher(pl_module.model)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.teacher.to(pl_module.device)

    # A checkpoint records which teacher it was distilled from; a resumed job must use the same.
    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_path, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("fingerprint") is not None and self.fingerprint is not None and not math.isclose(
            state["fingerprint"], self.fingerprint, rel_tol=1e-9
        ):
            raise ConfigError(
                f"the checkpoint was distilled from the teacher {state['teacher']!r}, and the teacher "
                f"{self.teacher_path!r} loaded now has different weights. Resume with the original teacher, or "
                "start over with resume=false."
            )

    @torch.no_grad()
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with trainer.precision_plugin.forward_context():
            batch[TEACHER_LOGITS] = self.teacher(**inputs).logits.detach()

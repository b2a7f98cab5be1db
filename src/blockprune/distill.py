"""Knowledge distillation: logits (Hinton et al. 2015), hidden states and attention maps (TinyBERT,
CoFi), and the callback that owns the teacher."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from blockprune.augment import Perturbation, TeacherAugmentation
from blockprune.data.reading import read_texts
from blockprune.errors import BlockpruneError, ConfigError

#: Batch key under which the distillation callback hands the teacher's logits to the module.
TEACHER_LOGITS = "teacher_logits"
#: Batch keys of the teacher's hidden states (embeddings + every layer) and attention maps.
TEACHER_HIDDEN = "teacher_hidden"
TEACHER_ATTENTIONS = "teacher_attentions"
#: Batch key of the teacher-labelled extra examples (perturbed copies, unlabelled texts): KL only.
AUGMENTED = "augmented"
_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in batch.items() if k in _INPUT_KEYS}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch-mean.

    The T^2 factor keeps the soft-target gradients on the same scale as the hard-label loss
    when T changes (Hinton et al. 2015, section 2).
    """
    t = temperature
    log_p_student = nn.functional.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = nn.functional.log_softmax(teacher_logits.float() / t, dim=-1)
    return nn.functional.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * t * t


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer (1-based, as in ``hidden_states``) each student layer imitates: 1:1 at equal
    depth (head/FFN pruning keeps the depth), else evenly spaced (TinyBERT's uniform mapping)."""
    if student_layers < 1 or teacher_layers % student_layers:
        raise ConfigError(
            f"hidden-state distillation maps {student_layers} student layers onto {teacher_layers} teacher layers; "
            "the teacher's depth must be a multiple of the student's. Set distill.hidden_weight=0 for this pair."
        )
    step = teacher_layers // student_layers
    return [(i + 1) * step for i in range(student_layers)]


def hidden_state_loss(
    student_hidden: Sequence[torch.Tensor], teacher_hidden: Sequence[torch.Tensor], attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean over the student's layers of the MSE to its mapped teacher layer, over real tokens.

    ``*_hidden`` are ``hidden_states`` tuples (embeddings first, then one per layer). Padding
    positions are left out: their states are arbitrary and would dilute the loss with length.
    The hidden width is the same on both sides (pruning heads and neurons keeps it), so no
    projection is learned (CoFi's layer loss without its transform).
    """
    pairs = layer_map(len(student_hidden) - 1, len(teacher_hidden) - 1)
    mask = attention_mask.unsqueeze(-1).float()
    denom = mask.sum() * student_hidden[-1].shape[-1]
    losses = [
        (((student_hidden[i + 1].float() - teacher_hidden[t].float()) ** 2) * mask).sum() / denom
        for i, t in enumerate(pairs)
    ]
    return torch.stack(losses).mean()


def attention_map_loss(
    student_attentions: Sequence[torch.Tensor], teacher_attentions: Sequence[torch.Tensor], attention_mask: torch.Tensor
) -> torch.Tensor:
    """Mean over layers of the MSE between attention probabilities (TinyBERT), per head, over the
    rows of real query tokens (every key column; padded keys have probability 0 on both sides)."""
    pairs = layer_map(len(student_attentions), len(teacher_attentions))
    rows = attention_mask[:, None, :, None].float()  # (batch, 1, query, 1)
    losses = []
    for i, t in enumerate(pairs):
        s, te = student_attentions[i].float(), teacher_attentions[t - 1].float()
        denom = rows.sum() * s.shape[1] * s.shape[-1]
        losses.append((((s - te) ** 2) * rows).sum() / denom)
    return torch.stack(losses).mean()


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

    def __init__(
        self,
        teacher: str | None,
        temperature: float = 2.0,
        alpha: float = 0.5,
        hidden_weight: float = 0.0,
        attention_weight: float = 0.0,
        augment: dict[str, Any] | None = None,
        unlabelled_files: Sequence[str] = (),
        text_column: str = "Text",
        max_length: int = 128,
        seed: int = 0,
    ) -> None:
        if not teacher:
            raise ConfigError(
                "distill=on needs a fine-tuned teacher: set distill.teacher=<model folder or hub id>, or "
                "init_from=<fine-tuned folder> (the teacher then defaults to it). `make table1` does this for you."
            )
        if temperature <= 0:
            raise ConfigError(f"distill.temperature={temperature} must be > 0 (typical: 1 to 4).")
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"distill.alpha={alpha} must be in [0, 1]: the weight of the distillation loss.")
        if hidden_weight < 0 or attention_weight < 0:
            raise ConfigError(
                f"distill.hidden_weight={hidden_weight} and distill.attention_weight={attention_weight} must be >= 0 "
                "(0 turns that loss off)."
            )
        self.teacher_path = str(teacher)
        self.temperature = temperature
        self.alpha = alpha
        self.hidden_weight = hidden_weight
        self.attention_weight = attention_weight
        self.augmentation = _augmentation(augment, unlabelled_files, text_column, max_length, seed)
        self.tokenizer: Any = None
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
        if self.attention_weight > 0:  # fused (sdpa) attention returns no attention maps
            teacher.set_attn_implementation("eager")
        self.fingerprint = teacher_fingerprint(teacher)
        self.tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        return teacher

    def loss(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """alpha * T^2 * KL + (1 - alpha) * CE, with both parts for logging."""
        kd = distillation_loss(student_logits, teacher_logits, self.temperature)
        ce = nn.functional.cross_entropy(student_logits, labels)
        return {"loss": self.alpha * kd + (1 - self.alpha) * ce, "kd_loss": kd, "ce_loss": ce}

    def training_loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The student's whole distillation objective for one batch (with its parts for logging):
        alpha * KL (labelled and augmented examples alike) + (1 - alpha) * CE (labelled only)
        + hidden_weight * hidden-state MSE + attention_weight * attention-map MSE."""
        hidden, attention = self.hidden_weight > 0, self.attention_weight > 0
        out = model(**model_inputs(batch), output_hidden_states=hidden, output_attentions=attention)
        losses = self.loss(out.logits, batch[TEACHER_LOGITS], batch["labels"])
        extra = batch.get(AUGMENTED)
        if extra is not None:
            kd_aug = distillation_loss(model(**model_inputs(extra)).logits, extra[TEACHER_LOGITS], self.temperature)
            n, m = len(batch["labels"]), len(extra[TEACHER_LOGITS])
            losses["kd_aug_loss"] = kd_aug
            losses["kd_loss"] = (n * losses["kd_loss"] + m * kd_aug) / (n + m)  # every example's KL counts once
            losses["loss"] = self.alpha * losses["kd_loss"] + (1 - self.alpha) * losses["ce_loss"]
        if hidden:
            losses["hidden_loss"] = hidden_state_loss(out.hidden_states, batch[TEACHER_HIDDEN], batch["attention_mask"])
            losses["loss"] = losses["loss"] + self.hidden_weight * losses["hidden_loss"]
        if attention:
            losses["attention_loss"] = attention_map_loss(
                out.attentions, batch[TEACHER_ATTENTIONS], batch["attention_mask"]
            )
            losses["loss"] = losses["loss"] + self.attention_weight * losses["attention_loss"]
        return losses

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.teacher is None:
            self.teacher = self.load_teacher(pl_module.model)
        if self.attention_weight > 0:
            pl_module.model.set_attn_implementation("eager")
        if self.augmentation is not None and self.augmentation._tokenizer is None:
            if self.tokenizer is None:  # a teacher shares the student's tokenizer (load_teacher checks it)
                from transformers import AutoTokenizer

                self.tokenizer = AutoTokenizer.from_pretrained(self.teacher_path)
            self.augmentation.setup(self.tokenizer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.teacher.to(pl_module.device)

    # A checkpoint records which teacher it was distilled from; a resumed job must use the same.
    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_path, "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (
            state.get("fingerprint") is not None
            and self.fingerprint is not None
            and not math.isclose(state["fingerprint"], self.fingerprint, rel_tol=1e-9)
        ):
            raise ConfigError(
                f"the checkpoint was distilled from the teacher {state['teacher']!r}, and the teacher "
                f"{self.teacher_path!r} loaded now has different weights. Resume with the original teacher, or "
                "start over with resume=false."
            )

    @torch.no_grad()
    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        hidden, attention = self.hidden_weight > 0, self.attention_weight > 0
        with trainer.precision_plugin.forward_context():
            out = self.teacher(**model_inputs(batch), output_hidden_states=hidden, output_attentions=attention)
            batch[TEACHER_LOGITS] = out.logits.detach()
            if hidden:
                batch[TEACHER_HIDDEN] = tuple(h.detach() for h in out.hidden_states)
            if attention:
                batch[TEACHER_ATTENTIONS] = tuple(a.detach() for a in out.attentions)
            extra = self.augmentation.extra_inputs(batch, trainer.global_step) if self.augmentation else None
            if extra is not None:
                extra[TEACHER_LOGITS] = self.teacher(**extra).logits.detach()
                batch[AUGMENTED] = extra


def _augmentation(
    augment: dict[str, Any] | None, files: Sequence[str], text_column: str, max_length: int, seed: int
) -> TeacherAugmentation | None:
    """The augmentation that ``distill.augment`` and ``distill.unlabelled_files`` ask for, or None."""
    settings = dict(augment or {})
    copies = int(settings.pop("copies", 0))
    batch_size = int(settings.pop("unlabelled_batch_size", 32))
    unknown = set(settings) - {"swap", "delete", "mask"}
    if unknown:
        raise ConfigError(
            f"distill.augment has unknown keys {sorted(unknown)}; allowed: copies, swap, delete, mask, "
            "unlabelled_batch_size."
        )
    texts = [t for f in files or () for t in read_texts(f, text_column)]
    if files and not texts:
        raise ConfigError(f"distill.unlabelled_files={list(files)} hold no texts in column {text_column!r}.")
    augmentation = TeacherAugmentation(copies, Perturbation(**settings), texts, batch_size, max_length, seed)
    return augmentation if augmentation.enabled else None

"""The training steps whose overhead is measured: dense fine-tuning, masked pruning, masked + KD.

Same model, batch and precision for every step, timed alternately in one process
(:func:`blockprune.bench.overhead.training_step_overhead`). Precision is Lightning Fabric's, as
in training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from blockprune.bench.overhead import training_step_overhead
from blockprune.distill import Distillation
from blockprune.models import load_model
from blockprune.pruning import BlockPruning
from blockprune.pruning.patch import masked_layers


def measure_step_overhead(
    model_dir: str,
    *,
    batch_size: int = 32,
    seq_len: int = 40,
    accelerator: str = "cpu",
    precision: str = "32-true",
    sparsity: float = 0.5,
    attention_block: Any = (32, 32),
    repeats: int = 20,
    warmup: int = 3,
) -> dict[str, Any]:
    """Median step times of dense fine-tuning, masked pruning, and masked pruning + KD."""
    fabric = L.Fabric(accelerator=accelerator, devices=1, precision=precision)
    g = torch.Generator().manual_seed(0)
    teacher_model = load_model(model_dir)
    vocab, labels = teacher_model.config.vocab_size, teacher_model.config.num_labels
    batch = {
        "input_ids": torch.randint(5, vocab, (batch_size, seq_len), generator=g),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
    }
    batch = {k: v.to(fabric.device) for k, v in batch.items()}
    targets = torch.randint(0, labels, (batch_size,), generator=g).to(fabric.device)
    teacher = fabric.setup_module(teacher_model.eval().requires_grad_(False))
    kd = Distillation(model_dir)

    def make_step(masked: bool, distill: bool) -> Callable[[], None]:
        model = load_model(model_dir).train()
        if masked:
            BlockPruning(sparsity, attention_block=attention_block).patch(model)
            for layer in masked_layers(model):
                layer.set_sparsity(sparsity)
        model, optimizer = fabric.setup(model, torch.optim.AdamW(model.parameters(), lr=1e-5))

        def step() -> None:
            logits = model(**batch).logits
            if distill:
                with torch.no_grad():
                    teacher_logits = teacher(**batch).logits
                loss = kd.loss(logits, teacher_logits, targets)["loss"]
            else:
                loss = torch.nn.functional.cross_entropy(logits.float(), targets)
            fabric.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step

    result = training_step_overhead(
        make_step(False, False),
        {"masked": make_step(True, False), "masked+kd": make_step(True, True)},
        repeats=repeats,
        warmup=warmup,
        cuda_sync=fabric.device.type == "cuda",
        progress=True,
    )
    result["settings"] = {
        "model_dir": str(model_dir),
        "batch_size": batch_size,
        "seq_len": seq_len,
        "precision": precision,
        "sparsity": sparsity,
        "attention_block": list(attention_block) if not isinstance(attention_block, str) else attention_block,
    }
    return result

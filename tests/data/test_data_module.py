"""TextClassificationDataModule end to end with the local XLM-R (e5) tokenizer."""

from __future__ import annotations

import json

import pytest
import torch

from blockprune.data import TextClassificationDataModule
from blockprune.errors import ConfigError, DataError

LABELS = {"Crime": 20, "Sports": 20, "Tech": 10}


@pytest.fixture
def small_csv(write_rows, balanced_rows):
    return write_rows("news.csv", balanced_rows(LABELS) + [("Text", "Label"), ("", "Tech")])


def make(e5_path, tmp_path, **kw):
    args = dict(
        tokenizer=e5_path,
        batch_size=8,
        num_workers=0,
        output_dir=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
    )
    args.update(kw)
    return TextClassificationDataModule(**args)


def test_end_to_end(e5_path, tmp_path, small_csv):
    dm = make(e5_path, tmp_path, file=str(small_csv), max_length=10)
    dm.setup("fit")
    assert dm.label2id == {"Crime": 0, "Sports": 1, "Tech": 2} and dm.num_labels == 3
    assert dm.id2label == {0: "Crime", 1: "Sports", 2: "Tech"}
    sizes = dm.report["split_sizes"]
    assert sizes == {"train": 40, "val": 5, "test": 5}
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["labels"].shape == (8,)
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == lengths.max() <= 10  # padded to the longest in the batch only
    assert lengths.min() < lengths.max()
    assert (batch["input_ids"][batch["attention_mask"] == 0] == dm.tokenizer.pad_token_id).all()
    # labels map consistently with the texts
    val = next(iter(dm.val_dataloader()))
    assert [dm.id2label[i] for i in val["labels"].tolist()] == [t.split()[1] for t in dm.texts("val")]
    assert dm.labels("val") == val["labels"].tolist()
    # report
    report = json.loads((tmp_path / "out" / "data_report.json").read_text(encoding="utf-8"))
    q = report["quality"][str(small_csv)]
    assert q["header_rows"] == 1 and q["empty_texts"] == 1 and q["rows_out"] == 50
    assert set(report["tokens"]["train"]) == {"count", "mean", "p50", "p95", "max", "truncated_fraction"}
    assert report["tokens"]["train"]["truncated_fraction"] > 0 and report["tokens"]["train"]["max"] > 10
    assert report["label_counts"]["val"] == {"Crime": 2, "Sports": 2, "Tech": 1}
    assert report["leakage"] == {"val&train": 0, "test&train": 0, "test&val": 0}
    assert report["cache"]["hit"] is False
    # idempotent setup, then a second module hits the cache
    first = dm.texts("train")
    dm.setup("test")
    assert dm.texts("train") == first and len(dm.test_dataloader().dataset) == 5
    dm2 = make(e5_path, tmp_path, file=str(small_csv), max_length=10)
    dm2.setup("fit")
    assert dm2.report["cache"]["hit"] is True
    a, b = next(iter(dm.val_dataloader())), next(iter(dm2.val_dataloader()))
    assert all(torch.equal(a[k], b[k]) for k in a)
    dm3 = make(e5_path, tmp_path, file=str(small_csv), max_length=32)  # other max_length: other key
    assert dm3.report["cache"]["hit"] is False


def test_three_files_leakage_limit_and_hydra(e5_path, tmp_path, write_rows, balanced_rows):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    rows = balanced_rows({"A": 12, "B": 12})
    train = write_rows("train.tsv", rows[:8] + rows[12:20])
    val = write_rows("val.tsv", rows[8:10] + rows[20:22] + rows[:1])  # one leaked text
    test = write_rows("test.tsv", rows[10:12] + rows[22:24])
    cfg = OmegaConf.create(
        {
            "_target_": "blockprune.data.TextClassificationDataModule",
            "tokenizer": e5_path,
            "train_file": str(train),
            "val_file": str(val),
            "test_file": str(test),
            "num_workers": 0,
            "quality": {"duplicates": "drop"},
            "limit": {"train": 6},
            "split": [0.8, 0.1, 0.1],
            "output_dir": str(tmp_path / "o"),
        }
    )
    dm = instantiate(cfg)
    dm.setup()
    r = dm.report
    assert r["leakage"]["val&train"] == 1 and r["split_sizes"] == {"train": 6, "val": 4, "test": 4}
    assert r["label_counts"]["train"] == {"A": 3, "B": 3}
    assert set(r["quality"]) == {str(train), str(val), str(test)}
    assert dm.num_labels == 2


def test_nothing_written_when_validation_fails(e5_path, tmp_path, write_rows):
    train = write_rows("tr.csv", [("a", "A"), ("b", "B")])
    val = write_rows("va.csv", [("c", "Z")])
    dm = make(e5_path, tmp_path, train_file=str(train), val_file=str(val))
    with pytest.raises(DataError, match=r"va.csv: line 2: label 'Z'"):
        dm.setup("fit")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_max_length_beyond_model(e5_path, tmp_path, small_csv):
    dm = make(e5_path, tmp_path, file=str(small_csv), max_length=1024)
    with pytest.raises(ConfigError, match=r"data.max_length=1024.*model_max_length=512"):
        dm.setup()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"file": "a.csv", "train_file": "b.csv"}, "only one"),
        ({}, "data.file"),
        ({"file": "a.csv", "batch_size": 0}, "data.batch_size"),
        ({"file": "a.csv", "limit": {"dev": 3}}, "data.limit.dev"),
        ({"file": "a.csv", "quality": {"mojibake": "fix"}}, "data.quality.mojibake"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ConfigError, match=match):
        TextClassificationDataModule(tokenizer="x", **kw)


def test_missing_tokenizer(tmp_path, small_csv):
    dm = TextClassificationDataModule(tokenizer=str(tmp_path / "no-such-tokenizer"), file=str(small_csv))
    with pytest.raises(ConfigError, match="data.tokenizer"):
        dm.setup()


def test_real_shc_default_splits(e5_path, tmp_path, shc_path):
    dm = make(e5_path, tmp_path, file=str(shc_path))
    dm.setup()
    assert dm.report["split_sizes"] == {"train": 1908, "val": 241, "test": 237}
    assert dm.num_labels == 12


def test_trainer_fast_dev_run(e5_path, tmp_path, small_csv):
    """Batches go through a real Lightning loop (device transfer, val and test hooks)."""
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self, vocab: int, n: int) -> None:
            super().__init__()
            self.emb = torch.nn.EmbeddingBag(vocab, 8, mode="sum")
            self.out = torch.nn.Linear(8, n)

        def step(self, batch):
            logits = self.out(self.emb(batch["input_ids"], per_sample_weights=batch["attention_mask"].float()))
            return torch.nn.functional.cross_entropy(logits, batch["labels"])

        def training_step(self, batch, i):
            self.seen = {k: (tuple(v.shape), v.dtype) for k, v in batch.items()}
            return self.step(batch)

        def validation_step(self, batch, i):
            self.log("val_loss", self.step(batch))

        def test_step(self, batch, i):
            self.log("test_loss", self.step(batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = make(e5_path, tmp_path, file=str(small_csv))
    model = Tiny(len(dm.tokenizer), dm.num_labels)
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    before = model.out.weight.detach().clone()
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and trainer.global_step == 1
    assert not torch.equal(before, model.out.weight)  # a real optimiser step on a real batch
    (batch_size, length), _ = model.seen["input_ids"]
    assert model.seen["labels"] == ((batch_size,), torch.int64) and model.seen["attention_mask"][0] == (
        batch_size,
        length,
    )
    assert 1 <= length <= dm.max_length
    assert torch.isfinite(trainer.callback_metrics["val_loss"])
    (test,) = trainer.test(model, datamodule=dm, verbose=False)
    assert test["test_loss"] > 0 and torch.isfinite(torch.tensor(test["test_loss"]))

"""Config composition: every group option composes, and the composed config instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from blockprune.config import CONFIG_DIR, entry_script

GROUPS = ["data", "model", "prune", "distill", "trainer", "callbacks", "logger", "experiment"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/blockprune-compose"
        del cfg["hydra"]
    return cfg


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_resolves(group, option):
    overrides = [f"{group}={option}"]
    if option == "files":
        overrides += ["data.train_file=a.csv", "data.val_file=b.csv", "data.test_file=c.csv"]
    cfg = _compose(overrides)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


def test_defaults_are_the_dense_baseline_without_distillation():
    cfg = _compose([])
    assert cfg.prune.sparsity == 0 and "_target_" not in cfg.prune and not cfg.distill
    assert cfg.model.net.name_or_path.endswith("models/e5-small-mr")
    assert Path(cfg.data.file).name == "SHC_Valid.csv"


def test_cli_words_off_and_on_select_the_distill_options():
    assert _compose(["distill=on"]).distill.temperature > 0
    assert not _compose(["distill=off"]).distill


def test_precision_defaults_to_the_devices_and_can_be_set():
    from blockprune.config import default_precision

    assert _compose([]).trainer.precision == default_precision()  # "32" on a CPU, bf16-mixed on an Ampere GPU
    assert _compose(["trainer.precision=bf16-mixed"]).trainer.precision == "bf16-mixed"


def test_print_config_command(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(entry_script()), "--cfg", "job", "prune=block"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "sparsity: 0.5" in out and "_target_: blockprune.pruning.BlockPruning" in out


def test_a_sparsity_on_the_default_prune_group_means_block_pruning():
    from blockprune.components import build_pruning
    from blockprune.pruning import BlockPruning

    assert build_pruning(_compose([]).prune) is None
    pruning = build_pruning(_compose(["prune.sparsity=0.25"]).prune)
    assert isinstance(pruning, BlockPruning) and pruning.sparsity == 0.25 and pruning.attention_block == (32, 32)


def test_the_teacher_defaults_to_the_model_the_job_starts_from():
    assert _compose(["distill=on"]).distill.teacher.endswith("models/e5-small-mr")
    assert _compose(["distill=on", "init_from=/some/baseline"]).distill.teacher == "/some/baseline"


def test_init_from_must_be_a_model_folder_or_for_cv_a_cv_job_folder(tmp_path):
    """A folder without config.json is refused before training; a CV job may start from a CV job's folder
    (each fold from its own fold's model), a plain job may not."""
    from blockprune.errors import ConfigError
    from blockprune.validation import check_config

    job = tmp_path / "job"
    (job / "fold_0" / "model").mkdir(parents=True)
    (job / "fold_0" / "model" / "config.json").write_text("{}")
    cfg = OmegaConf.create(
        {"trainer": {"precision": "32"}, "model": {}, "data": {"cv_folds": 2}, "init_from": str(job)}
    )
    check_config(cfg)
    cfg.data.cv_folds = None
    with pytest.raises(ConfigError, match="no model folder there"):
        check_config(cfg)
    cfg.data.cv_folds, cfg.init_from = 2, str(tmp_path / "empty")
    with pytest.raises(ConfigError, match="no model folder there"):
        check_config(cfg)


def test_the_kept_checkpoint_metric_must_be_logged_and_read_in_its_direction():
    from blockprune.errors import ConfigError
    from blockprune.validation import check_checkpoint_monitor

    check_checkpoint_monitor(OmegaConf.create({"monitor": "val/loss", "mode": "min"}))
    check_checkpoint_monitor(OmegaConf.create({"monitor": "val/acc", "mode": "max"}))
    with pytest.raises(ConfigError, match="not a logged validation metric"):
        check_checkpoint_monitor(OmegaConf.create({"monitor": "val_loss", "mode": "min"}))
    with pytest.raises(ConfigError, match="mode=min"):
        check_checkpoint_monitor(OmegaConf.create({"monitor": "val/loss", "mode": "max"}))


@pytest.mark.parametrize("preset", _options("experiment"))
def test_every_presets_pruned_jobs_compose_and_pass_the_checks(preset):
    """What `blockprune table1 --preset <preset>` runs for a pruned row: the preset, block pruning, KD
    and the preset's own pruned_overrides."""
    from blockprune.validation import check_checkpoint_monitor

    study = _compose([f"experiment={preset}"]).get("study") or {}
    pruned = ["prune=block", "prune.sparsity=0.5", "distill=on", *(study.get("pruned_overrides") or [])]
    cfg = _compose([f"experiment={preset}", *pruned])
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    check_checkpoint_monitor(cfg.callbacks.model_checkpoint)
    assert cfg.prune.sparsity == 0.5 and cfg.distill.temperature > 0


def test_the_checked_validation_metrics_are_those_the_module_logs():
    from blockprune.module import ClassifierModule
    from blockprune.validation import VALIDATION_METRICS
    from helpers.saved_models import tiny_classifier

    module = ClassifierModule(tiny_classifier())
    assert set(VALIDATION_METRICS) == {"val/loss", *module.val_metrics.keys()}

"""A complete tiny study through `make table1`'s code path: baseline, six pruned jobs, report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from blockprune.report import build_table
from blockprune.study import run_study
from helpers.paths import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study")
    code = run_study("table1_tiny", out, [f"paths.cache_dir={out / 'cache'}"])
    assert code == 0
    return out


def test_study_table_has_seven_complete_rows(study):
    table = build_table([study])
    assert list(table["row"]) == [
        "baseline",
        "25% pruning",
        "50% pruning",
        "75% pruning",
        "25% + KD",
        "50% + KD",
        "75% + KD",
    ]
    assert (table["status"] == "completed").all()
    filled = [
        "params_M",
        "reduction_pct",
        "encoder_params_M",
        "speedup",
        "analytic_speedup",
        "latency_ms",
        "accuracy",
        "macro_f1",
        "energy_kwh",
        "co2_kg",
    ]
    assert table[filled].notna().all().all()
    pruned = table[table["row"] != "baseline"]
    assert pruned["vocab_size"].notna().all() and (pruned["params_M"] < table["params_M"][0]).all()
    # head pruning keeps 3/4, 1/2, 1/4 of the encoder FLOPs (the classifier head is not pruned)
    assert list(pruned["analytic_speedup"]) == pytest.approx([4 / 3, 2.0, 4.0] * 2, rel=0.01)
    md = (study / "table1.md").read_text()
    assert md.count("\n| ") == 7 and "75% + KD" in md  # seven rows under the header
    assert (study / "table1.csv").is_file()


def test_plot_is_a_valid_png(study):
    from matplotlib.image import imread

    png = study / "accuracy_vs_speedup.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(png).shape[0] > 100


def test_every_job_has_an_offline_wandb_run_and_positive_carbon(study):
    jobs = [study / "baseline", *sorted((study / "pruned").glob("[0-9]"))]
    assert len(jobs) == 7
    for job in jobs:
        assert list((job / "wandb").glob("offline-run-*")), f"no W&B offline run in {job}"
        carbon = json.loads((job / "results.json").read_text())["carbon"]
        for stage in ("training", "inference"):
            assert carbon[stage]["energy_kwh"] > 0 and carbon[stage]["emissions_kg"] > 0


def test_the_report_table_and_plot_are_logged_to_an_offline_wandb_run(study):
    runs = list((study / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))
    (logged,) = runs[0].rglob("table1_*.table.json")  # the table W&B stores for the run, row by row
    data = json.loads(logged.read_text())
    rows = [dict(zip(data["columns"], r)) for r in data["data"]]
    expected = build_table([study])
    assert [r["row"] for r in rows] == list(expected["row"])
    assert [r["accuracy"] for r in rows] == pytest.approx(list(expected["accuracy"]))
    (image,) = runs[0].rglob("accuracy_vs_speedup_*.png")
    assert image.read_bytes() == (study / "accuracy_vs_speedup.png").read_bytes()


def test_distilled_jobs_logged_both_loss_parts(study):
    results = [json.loads(p.read_text()) for p in (study / "pruned").glob("*/results.json")]
    kd_jobs = [r for r in results if r["config"]["distill"]]
    assert len(kd_jobs) == 3
    for r in kd_jobs:
        header = (Path(r["model_dir"]).parent / "csv" / "metrics.csv").read_text().splitlines()[0]
        assert "train/kd_loss_epoch" in header and "train/ce_loss_epoch" in header


def _run_notebook(study: Path) -> list:
    """Execute notebooks/study_analysis.ipynb on ``study``; the outputs of its code cells."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / "study_analysis.ipynb", as_version=4)
    os.environ["BLOCKPRUNE_STUDY"] = str(study)
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        ).execute()
    finally:
        del os.environ["BLOCKPRUNE_STUDY"]
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def test_analysis_notebook_runs_on_the_study(study):
    outputs = _run_notebook(study)
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("75% + KD" in json.dumps(o) for o in outputs)


def test_precision_flag_reaches_the_trainer(tmp_path):
    from hydra.utils import instantiate

    from helpers.jobs import make_cfg

    cfg = make_cfg(tmp_path, ["trainer.precision=bf16-mixed"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.precision == "bf16-mixed"


def test_cli_report_and_bench_read_the_study(study, tmp_path, capsys):
    from blockprune.cli import main

    assert main(["report", str(study), "--out", str(tmp_path)]) == 0
    assert "75% + KD" in capsys.readouterr().out and (tmp_path / "table1.md").is_file()
    assert (
        main(
            [
                "bench",
                str(study / "baseline"),
                str(study / "pruned" / "4"),
                "--batch-sizes",
                "1",
                "--seq-lens",
                "0",
                "--typical-seq-len",
                "16",
                "--warmup",
                "1",
                "--repeats",
                "2",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert set(bench["cells"][0]["results"]) == {"baseline", "75% pruning"}
    assert main(["bench", str(tmp_path / "missing"), str(study / "baseline")]) == 2


@pytest.fixture(scope="module")
def study_given_baseline(study, tmp_path_factory) -> Path:
    """`blockprune table1 --baseline <first study's baseline> seed=7`: one pruned job, one that fails (sparsity 1.5)."""
    out = tmp_path_factory.mktemp("study_given_baseline")
    code = run_study(
        "table1_tiny",
        out,
        [f"paths.cache_dir={study / 'cache'}", "study.sparsities=[0.5,1.5]", "study.distill=[off]", "seed=7"],
        baseline=str(study / "baseline"),
    )
    assert code == 1  # the failed job fails the command, after the report is written
    return out


def test_the_study_folder_records_where_its_baseline_is(study, study_given_baseline):
    own = json.loads((study / "study.json").read_text())
    assert own["baselines"] == [str((study / "baseline").resolve())] and not own["baseline_given"]
    given = json.loads((study_given_baseline / "study.json").read_text())
    assert given["baselines"] == [str((study / "baseline").resolve())] and given["baseline_given"]
    assert not (study_given_baseline / "baseline").exists()


def test_a_given_baseline_fixes_the_split_whatever_the_seed(study, study_given_baseline):
    """seed=7 trains differently, but the pruned job splits the data as the baseline did (data.seed=42),
    so it is tested on the baseline's test examples, which the baseline never trained on."""
    base = json.loads((study / "baseline" / "results.json").read_text())
    pruned = json.loads((study_given_baseline / "pruned" / "0" / "results.json").read_text())
    assert (pruned["config"]["seed"], pruned["config"]["data"]["seed"]) == (7, base["config"]["data"]["seed"])
    assert sorted(pruned["predictions"]["id"]) == sorted(base["predictions"]["id"])


def test_report_and_plot_of_a_study_with_a_given_baseline_and_a_failed_row(study, study_given_baseline):
    table = build_table([study_given_baseline])  # the study folder alone, as the notebook reads it
    assert list(table["row"]) == ["baseline", "50% pruning", "150% pruning"]
    assert list(table["status"]) == ["completed", "completed", "failed"]
    assert table["job_dir"][0] == str((study / "baseline").resolve())
    pruned = table.iloc[1]
    assert pruned["diff_acc"] == pytest.approx(pruned["accuracy"] - table["accuracy"][0], abs=1e-6)  # paired with it
    assert (study_given_baseline / "table1.md").read_text().count("\n| ") == 3
    assert (study_given_baseline / "accuracy_vs_speedup.png").read_bytes()[:8] == PNG_SIGNATURE


def test_analysis_notebook_runs_on_a_study_with_a_given_baseline_and_a_failed_row(study_given_baseline):
    outputs = _run_notebook(study_given_baseline)
    assert not [o for o in outputs if o.output_type == "error"]
    text = json.dumps(outputs)
    assert "50% pruning" in text and "1 not completed" in text

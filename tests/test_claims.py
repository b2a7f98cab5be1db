"""Numbers quoted in README.md and docs/ are the numbers in their committed source files."""

from __future__ import annotations

import json
import re

import pytest

from helpers.paths import ROOT

RESULTS = ROOT / "docs" / "results"


def _readme_section(title: str) -> str:
    """The README's ``### <title>...`` section, up to the next heading."""
    (section,) = [part for part in (ROOT / "README.md").read_text().split("\n#") if part.startswith(f"## {title}")]
    return section


def _row(section: str, label: str) -> list[str]:
    line = next(x for x in section.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _speedups(batch: int) -> list[float]:
    bench = json.loads((RESULTS / "cpu_bench" / "bench.json").read_text())
    (cell,) = [c for c in bench["cells"] if c["batch"] == batch and c["dtype"] == "float32" and c["seq_len"] == 39]
    return [cell["results"][f"{p}% pruning"]["speedup"] for p in (25, 50, 75)]


def test_readme_cpu_speedups_are_those_of_bench_json():
    readme = (ROOT / "README.md").read_text()
    s25, s50, s75 = (f"{x:.2f}x" for x in _speedups(32))
    assert f"| 25 % + KD | 18.52 | 39 % | {s25} (1.33x)" in readme
    assert f"| **50 % + KD** | **13.20** | **57 %** | **{s50} (2.00x)**" in readme
    assert f"| 75 % + KD | 7.89 | 74 % | {s75} (4.00x)" in readme
    assert f"at {s50} measured speed-up" in readme
    for stale in ("1.30x (1.33x)", "1.92x (2.00x)", "3.70x (4.00x)", "83.2 %", "in 42 s"):
        assert stale not in readme


@pytest.mark.parametrize("doc", ["docs/benchmarks.md", "docs/results/table1_cpu/README.md"])
def test_docs_quote_bench_json_for_the_cpu_speedups(doc):
    text = (ROOT / doc).read_text()
    for x in _speedups(32):
        assert f"{x:.2f}x" in text


def test_readme_accuracies_are_those_of_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    baseline = json.loads((RESULTS / "table1_cpu" / "jobs" / "baseline" / "results.json").read_text())
    assert f"**{100 * baseline['metrics']['test/acc']:.2f} %**" in readme
    assert f"{baseline['wall_time_s']:,} s" in readme
    section = _readme_section("MahaNews SHC headlines, one split")
    for job, row in (("p25_kd", "25 % + KD"), ("p50_kd", "50 % + KD"), ("p75_kd", "75 % + KD")):
        r = json.loads((RESULTS / "table1_cpu" / "jobs" / job / "results.json").read_text())
        metrics = r.get("metrics_final") or r.get("metrics_compacted") or r["metrics"]
        line = next(x for x in section.splitlines() if row in x and x.startswith("|"))
        assert line.rstrip(" |*").endswith(f"{100 * metrics['test/acc']:.2f}"), line


def test_h100_claims_are_those_of_its_bench_md():
    bench = (RESULTS / "table1_gpu_h100" / "bench.md").read_text()
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks inside sentences

    def cells(dtype: str, batch: int, seq: str) -> str:
        row = next(r for r in bench.splitlines() if re.match(rf"\| {dtype} \| {batch} \| {seq}\b", r))
        return "/".join(c.split("×")[0].strip() for c in row.split("|")[5:8])

    for batch, seq in ((32, "128"), (128, "39"), (128, "128")):
        assert f"{batch} x {seq[:3]}: {cells('float32', batch, seq)}x" in readme
    table = (RESULTS / "table1_gpu_h100" / "table1.md").read_text()
    assert "| baseline | 30.48 | 0.0% | 1.00x | 1.00x | 6.66 | 86.50 |" in table and "**86.50 %**" in readme


def test_readme_mahasent_rows_are_those_of_the_committed_study():
    """Accuracy, interval, paired difference, parameters and both speed-ups of each README row,
    recomputed from the jobs' results.json (per-sentence predictions) of docs/results/table1_mahasent_cpu."""
    from blockprune.evaluation import compare_to_baseline, record_interval

    section = _readme_section("MahaSent-ST, with paired intervals")
    jobs = RESULTS / "table1_mahasent_cpu" / "jobs"
    base = json.loads((jobs / "baseline" / "results.json").read_text())
    for job, row in (("baseline", "dense"), ("p25_kd", "25 % + KD"), ("p50_kd", "50 % + KD"), ("p75_kd", "75 % + KD")):
        r = json.loads((jobs / job / "results.json").read_text())
        acc = 100 * (r.get("metrics_final") or r.get("metrics_compacted") or r["metrics"])["test/acc"]
        iv = record_interval([r["predictions"]], 3)
        cells = _row(section, row)
        assert cells[1] == f"{r['params']['total'] / 1e6:.2f}"
        assert cells[3] == f"{acc:.2f} [{iv['acc_low']:.2f}, {iv['acc_high']:.2f}]"
        if job != "baseline":
            d = compare_to_baseline([base["predictions"]], [r["predictions"]], 3)
            assert cells[4] == f"{d['diff_acc']:+.2f} [{d['diff_acc_low']:+.2f}, {d['diff_acc_high']:+.2f}]"
        torch_x = r["speed"]["speedup"]
        int8_x = r["deploy"]["runtimes"]["onnx-int8"]["speedup_vs_dense_torch"]["batch_32"]
        assert cells[5] == f"{torch_x:.2f}x / {int8_x:.2f}x"


def _cv_row(name: str) -> tuple[dict, list[float], dict]:
    """A committed SHC CV row: pooled predictions, per-fold accuracies and the job's results.json.
    The 50 % row is the preset's own run with deploy (p50_deployed_avx2, on the AVX2 EPYC)."""
    folder = RESULTS / "table1_cpu_cv"
    path = folder / "p50_deployed_avx2" / "pruned" / "0" if name == "p50_kd" else folder / "jobs" / name
    r = json.loads((path / "results.json").read_text())
    return r["predictions"], [f["metrics"]["test/acc"] for f in r["folds"]], r


def test_readme_shc_cross_validation_rows_are_those_of_the_committed_study():
    """Each row of the README's SHC cross-validation table, recomputed from the pooled per-headline
    predictions and per-fold metrics in docs/results/table1_cpu_cv."""
    from blockprune.evaluation import compare_to_baseline, record_interval, record_metrics

    section = _readme_section("MahaNews SHC headlines, 5-fold cross-validation")
    base, _, _ = _cv_row("baseline")
    for job, row in (("baseline", "dense"), ("p25_kd", "25 % + KD"), ("p50_kd", "50 % + KD"), ("p75_kd", "75 % + KD")):
        record, fold_accs, r = _cv_row(job)
        assert len(set(record["id"])) == len(record["id"]) == 2386
        iv = record_interval([record], 12)
        cells = _row(section, row)
        assert cells[1] == f"{r['params']['total'] / 1e6:.2f}"
        acc = 100 * record_metrics(record, 12)["test/acc"]
        assert cells[2] == f"{acc:.2f} [{iv['acc_low']:.2f}, {iv['acc_high']:.2f}]"
        assert cells[5] == " / ".join(f"{100 * a:.1f}" for a in fold_accs)
        if job != "baseline":
            d = compare_to_baseline([base], [record], 12)
            assert cells[3] == f"{d['diff_acc']:+.2f} [{d['diff_acc_low']:+.2f}, {d['diff_acc_high']:+.2f}]"
            assert cells[4] == f"{d['p_mcnemar']:.2g}"
            assert cells[6].split()[0] == f"{r['speed']['speedup']:.2f}x"


@pytest.mark.parametrize(
    ("source", "section", "at_least"), [("deployed.json", 0, 12), ("deployed_threads1.json", 1, 6)]
)
def test_serving_doc_quotes_the_deployed_study_models(source, section, at_least):
    """Each row of docs/serving.md's tables of deployed study models (2 threads, then 1 thread) is the one in
    its json."""
    deployed = json.loads((RESULTS / "table1_mahasent_cpu" / source).read_text())
    text = (ROOT / "docs" / "serving.md").read_text().split("## The study's models, deployed")[1]
    doc = text.split("**One thread per runtime**")[section].split("What it says:")[0]
    names = {"baseline": "dense", "25% pruning + KD": "25 % + KD", "50% pruning + KD": "50 % + KD"}
    names["75% pruning + KD"] = "75 % + KD"
    quoted = 0
    for row, label in names.items():
        for runtime, x in deployed["rows"][row]["runtimes"].items():
            shown = (
                "torch fp32" if runtime == "torch" else runtime + (f" ({x['precision']})" if x.get("precision") else "")
            )
            line = next(
                (ln for ln in doc.splitlines() if ln.replace("*", "").startswith(f"| {label} | {shown} |")), None
            )
            if line is None:
                continue
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            speed = x["speedup_vs_dense_torch"]
            assert cells[2:5] == [f"{speed['batch_32']:.2f}x", f"{speed['batch_1']:.2f}x", f"{x['accuracy']:.2f}"]
            quoted += 1
    assert quoted >= at_least


@pytest.mark.parametrize(
    ("heading", "names", "flags"),
    [
        (
            "## Measured on an AVX2-only CPU",
            ("serving_cpu_avx2_threads2.json", "serving_cpu_avx2_threads2_run1.json"),
            ["avx2"],
        ),
        (
            "## Measured on an AVX-512 VNNI CPU without AMX",
            ("serving_cpu_vnni_threads2.json",),
            ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"],
        ),
    ],
)
def test_serving_doc_quotes_the_two_thread_runs(heading, names, flags):
    """Every row of docs/serving.md's AVX2-only and VNNI tables is the one in its jsons (with a second
    run, its ratios too)."""
    runs = [json.loads((RESULTS / "serving_cpu" / name).read_text()) for name in names]
    assert runs[0]["environment"]["flags"] == flags and runs[0]["environment"]["threads"] == 2
    doc = (ROOT / "docs" / "serving.md").read_text().split(heading)[1].split("What it")[0]
    rows = [[c.strip().strip("*") for c in ln.strip("|").split("|")] for ln in doc.splitlines() if ln.startswith("|")]
    rows = [r for r in rows if r[0] in ("dense", "50 %")]
    keys = [k for k in runs[0]["cells"]["batch 32 x 48"] if not k.startswith("_")]
    assert len(rows) == len(keys)

    def ratio(run: dict, cell: str, key: str) -> str:
        return f"{run['cells'][cell][key]['speedup_vs_dense_torch']:.2f}x"

    for row, key in zip(rows, keys, strict=True):
        assert row[0] == ("dense" if key.startswith("dense") else "50 %")
        assert row[2].split()[0] == ratio(runs[0], "batch 32 x 48", key)
        assert row[3].split()[0] == ratio(runs[0], "batch 1 x 29", key)
        if len(runs) > 1 and key in runs[1]["cells"]["batch 32 x 48"]:
            assert row[4] == f"{ratio(runs[1], 'batch 32 x 48', key)} / {ratio(runs[1], 'batch 1 x 29', key)}"
        quality = runs[0]["agreement_with_torch_fp32"].get(key)
        if quality and quality["max_abs_logit_diff"] > 0:
            assert row[3 + len(runs)] == f"{quality['max_abs_logit_diff']:.1e}"


def test_serving_doc_quotes_the_trained_model_on_the_avx2_cpu():
    """The int8 fidelity table and the demo job's deploy figures of docs/serving.md are their jsons'."""
    fidelity = json.loads((RESULTS / "serving_cpu" / "int8_fidelity_avx2.json").read_text())
    job = json.loads((RESULTS / "serving_cpu" / "demo_avx2_results.json").read_text())
    assert fidelity["environment"]["flags"] == job["deploy"]["environment"]["flags"] == ["avx2"]
    doc = (ROOT / "docs" / "serving.md").read_text().split("### A trained model on the AVX2-only CPU")[1]
    for name, x in fidelity["variants"].items():
        line = next(ln for ln in doc.splitlines() if ln.replace("*", "").startswith(f"| {name} |"))
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        assert cells[1] == f"{x['flipped']} ({100 * (1 - x['agreement']):.2f} %)"
        assert cells[3:5] == [f"{x['speedup_batch_32']:.2f}x", f"{x['speedup_batch_1']:.2f}x"]
    runtimes = job["deploy"]["runtimes"]
    text = " ".join(doc.split())
    from blockprune.evaluation import compare_to_baseline, prediction_record, record_interval

    ids, target = job["predictions"]["id"], job["predictions"]["target"]
    base, int8 = (prediction_record(ids, target, runtimes[n]["predictions"]) for n in ("torch", "onnx-int8"))
    interval, paired = record_interval([base]), compare_to_baseline([base], [int8])
    acc = 100 * runtimes["torch"]["accuracy"]
    assert f"accuracy, {acc:.2f} [{interval['acc_low']:.2f}, {interval['acc_high']:.2f}]" in text
    assert f"{paired['diff_acc']:+.2f} [{paired['diff_acc_low']:+.2f}, {paired['diff_acc_high']:+.2f}]" in text
    assert all(r["accuracy"] == runtimes["torch"]["accuracy"] for r in runtimes.values())
    changed = sum(a != b for a, b in zip(runtimes["torch"]["predictions"], runtimes["onnx-int8"]["predictions"]))
    assert f"changes {changed} of the {runtimes['torch']['n_texts']} predictions" in text
    for name, shown in (("onnx-int8", "{} at batch 32 and {} at batch 1"), ("openvino", "OpenVINO in f32 {} / {}")):
        speed = runtimes[name]["speedup_vs_dense_torch"]
        assert shown.format(f"{speed['batch_32']:.2f}x", f"{speed['batch_1']:.2f}x") in text


def test_serving_doc_quotes_the_shc_models_re_exported_with_openvino_int8():
    """docs/serving.md's openvino-int8 table (the study's ten fold models re-exported): every cell is the json's,
    and the runtimes the jobs had already re-tested got their accuracies again, to the last digit."""
    folder = RESULTS / "table1_cpu_cv" / "p50_deployed_vnni"
    rows = json.loads((folder / "deployed_openvino_int8.json").read_text())["rows"]
    stored = json.loads((folder / "deployed.json").read_text())["rows"]
    doc = (ROOT / "docs" / "serving.md").read_text().split("### The same models re-exported with `openvino-int8`")[1]
    doc = doc.split("- **Issue 14")[0]
    quoted = 0
    for row, label in (("baseline", "dense"), ("50% pruning + KD", "50 % + KD")):
        assert rows[row]["folds"] == 5 and rows[row]["environment"]["flags"][-1] == "avx512_bf16"
        for runtime, x in rows[row]["runtimes"].items():
            if runtime in stored[row]["runtimes"]:
                assert x["accuracy"] == pytest.approx(stored[row]["runtimes"][runtime]["accuracy"])
            shown = {"torch": "torch fp32", "openvino": "openvino (bf16)"}.get(runtime, runtime)
            line = next(ln for ln in doc.splitlines() if ln.replace("*", "").startswith(f"| {label} | {shown} |"))
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            p, iv, speed = x["vs_dense_torch_fp32"], x["interval"], x["speedup_vs_dense_torch"]
            assert cells[2:4] == [
                {True: "yes", False: "no"}[x["verified"]],
                f"{x['accuracy']:.2f} [{iv['acc_low']:.2f}, {iv['acc_high']:.2f}]",
            ]
            if (row, runtime) != ("baseline", "torch"):
                diff = f"{p['diff_acc']:+.2f} [{p['diff_acc_low']:+.2f}, {p['diff_acc_high']:+.2f}]"
                assert cells[4:6] == [diff, f"{p['p_mcnemar']:.2g}"]
            assert cells[6:8] == [f"{speed['batch_32']:.2f}x", f"{speed['batch_1']:.2f}x"]
            quoted += 1
    assert quoted == 8


def test_serving_doc_quotes_the_trained_models_on_the_vnni_cpu():
    """docs/serving.md's VNNI fidelity table: both fold-0 models' changed predictions and speed-ups."""
    runs = [
        json.loads((RESULTS / "serving_cpu" / f"int8_fidelity_vnni_{m}_fold0.json").read_text())
        for m in ("dense", "p50kd")
    ]
    assert (
        runs[0]["environment"]["flags"]
        == runs[1]["environment"]["flags"]
        == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    )
    doc = (ROOT / "docs" / "serving.md").read_text().split("### Trained models on the AVX-512 VNNI CPU")[1]
    rows = 0
    for name in runs[0]["variants"]:
        line = next(ln for ln in doc.splitlines() if ln.replace("*", "").startswith(f"| {name} |"))
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        for i, run in enumerate(runs):
            x = run["variants"][name]
            expect = [f"{x['flipped']} ({100 * (1 - x['agreement']):.2f} %)", f"{x['speedup_batch_32']:.2f}x"]
            assert cells[1 + 3 * i : 4 + 3 * i] == [*expect, f"{x['speedup_batch_1']:.2f}x"]
        rows += 1
    assert rows == 10


def deployed_cells(record: dict, runtime: dict, base_predictions: dict, dense_torch: bool = False) -> list[str]:
    """A deployed-model table's cells after the runtime column, recomputed from a job's pooled test
    record and one runtime of its deploy section, paired with the dense baseline's PyTorch fp32
    predictions: verified, accuracy [CI], Δ [paired CI] and McNemar p (— for the dense fp32 row itself),
    speed-ups at batch 32 and batch 1."""
    from blockprune.evaluation import compare_to_baseline, prediction_record, record_interval

    served = prediction_record(record["id"], record["target"], runtime["predictions"])
    iv, paired = record_interval([served], 12), compare_to_baseline([base_predictions], [served], 12)
    acc = 100 * sum(t == p for t, p in zip(served["target"], served["pred"])) / len(served["pred"])
    diff = f"{paired['diff_acc']:+.2f} [{paired['diff_acc_low']:+.2f}, {paired['diff_acc_high']:+.2f}]"
    speed = runtime["speedup_vs_dense_torch"]
    return [
        {True: "yes", False: "no"}[runtime["verified"]],
        f"{acc:.2f} [{iv['acc_low']:.2f}, {iv['acc_high']:.2f}]",
        *(["—", "—"] if dense_torch else [diff, f"{paired['p_mcnemar']:.2g}"]),
        f"{speed['batch_32']:.2f}x",
        f"{speed['batch_1']:.2f}x",
    ]


@pytest.mark.parametrize(
    ("run", "cpu", "flags"),
    [
        ("p50_deployed_avx2", "AVX2-only CPU", ["avx2"]),
        ("p50_deployed_vnni", "AVX-512 VNNI CPU", ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]),
    ],
)
def test_serving_doc_quotes_the_deployed_shc_cross_validation_models(run, cpu, flags):
    """docs/serving.md's tables of the SHC 5-fold study deployed (one per CPU): every accuracy, paired
    difference and speed-up recomputed from the two jobs' results.json (their deploy sections' pooled
    predictions)."""
    folder = RESULTS / "table1_cpu_cv" / run
    base, pruned = (json.loads((folder / p / "results.json").read_text()) for p in ("baseline", "pruned/0"))
    assert base["deploy"]["environment"]["flags"] == pruned["deploy"]["environment"]["flags"] == flags
    assert base["deploy"]["folds"] == pruned["deploy"]["folds"] == 5
    heading = f"## The SHC study's 50 % + KD model, deployed (5-fold cross-validation, {cpu})"
    doc = (ROOT / "docs" / "serving.md").read_text().split(heading)[1]
    doc = doc.split("What it says:")[0]
    quoted = 0
    for label, job in (("dense", base), ("50 % + KD", pruned)):
        record = job["predictions"]
        assert len(set(record["id"])) == len(record["id"]) == 2386
        for runtime, x in job["deploy"]["runtimes"].items():
            shown = (
                "torch fp32" if runtime == "torch" else runtime + (f" ({x['precision']})" if x.get("precision") else "")
            )
            line = next(ln for ln in doc.splitlines() if ln.replace("*", "").startswith(f"| {label} | {shown} |"))
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            dense_torch = (label, runtime) == ("dense", "torch")
            assert cells[2:] == deployed_cells(record, x, base["predictions"], dense_torch)
            quoted += 1
    assert quoted == 8


def test_serving_doc_quotes_the_second_seed_and_both_seeds_together():
    """docs/serving.md's seed-2 table and its claims: every cell recomputed from the seed-2 job's
    results.json paired with the committed dense baseline, the per-fold accuracies, the predictions that
    differ between the seeds, and the two-seed paired difference (as `blockprune report` pools seeds)."""
    from blockprune.evaluation import compare_to_baseline

    first = RESULTS / "table1_cpu_cv" / "p50_deployed_vnni"
    folder = RESULTS / "table1_cpu_cv" / "p50_deployed_vnni_seed2"
    base, seed42 = (json.loads((first / p / "results.json").read_text()) for p in ("baseline", "pruned/0"))
    seed2 = json.loads((folder / "pruned" / "0" / "results.json").read_text())
    assert (seed2["config"]["seed"], seed2["config"]["data"]["seed"], seed2["deploy"]["folds"]) == (2, 42, 5)
    assert seed2["deploy"]["environment"]["flags"] == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]
    assert seed2["deploy"]["best"]["runtime"] == "openvino-int8"
    doc = (ROOT / "docs" / "serving.md").read_text().split("### A second training seed")[1].split("## Measured on")[0]
    record = seed2["predictions"]
    for runtime, x in seed2["deploy"]["runtimes"].items():
        shown = (
            "torch fp32" if runtime == "torch" else runtime + (f" ({x['precision']})" if runtime == "openvino" else "")
        )
        line = next(ln for ln in doc.splitlines() if ln.replace("*", "").startswith(f"| 50 % + KD, seed 2 | {shown} |"))
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        assert cells[2:] == deployed_cells(record, x, base["predictions"])
    for job in (seed2, seed42, base):
        assert " / ".join(f"{100 * f['metrics']['test/acc']:.2f}" for f in job["folds"]) in doc.replace("\n  ", " ")
    by_id = dict(zip(seed42["predictions"]["id"], seed42["predictions"]["pred"]))
    differ = sum(by_id[i] != p for i, p in zip(record["id"], record["pred"]))
    assert f"{differ} of the 2,386 pooled predictions differ" in doc.replace("\n  ", " ")
    for job in (seed42, seed2):  # each seed alone, pooled over its folds
        one = compare_to_baseline([base["predictions"]], [job["predictions"]], 12)
        assert f"{one['diff_acc']:+.2f} [{one['diff_acc_low']:+.2f}, {one['diff_acc_high']:+.2f}]" in doc
    both = compare_to_baseline([base["predictions"]] * 2, [seed42["predictions"], record], 12)
    assert f"**{both['diff_acc']:+.2f} [{both['diff_acc_low']:+.2f}, {both['diff_acc_high']:+.2f}]**" in doc
    assert f"(McNemar p = {both['p_mcnemar']:.2f})" in doc.replace("\n  ", " ")
    two_seeds = (folder / "two_seeds" / "table1.md").read_text()
    assert f"{both['diff_acc']:+.2f} [{both['diff_acc_low']:+.2f}, {both['diff_acc_high']:+.2f}]" in two_seeds
    assert "openvino / openvino-int8 5.85x 81.94, -0.21 [-1.30, +0.86]" in two_seeds
    assert "-0.21 [-1.30, +0.86] at a mean 5.85x" in doc.replace("\n  ", " ")

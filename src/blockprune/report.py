"""Study results -> the paper's Table I (markdown + CSV) and Figure 3 (accuracy vs speed-up).

The report only reads the ``results.json`` each job wrote; it never re-runs anything. A job
that failed, or a folder without results, is a row with its status, never silently dropped.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from blockprune.atomic import atomic_path
from blockprune.evaluation import NO_LOSS_POINTS, compare_to_baseline, mean_std, record_interval
from blockprune.redact import redacted_argv

log = logging.getLogger(__name__)

#: Seeds, 95 % bootstrap intervals (points) and the paired comparison with the baseline (blockprune.evaluation).
INTERVAL_COLUMNS = [
    "seeds",
    "accuracy_std",
    "macro_f1_std",
    "acc_low",
    "acc_high",
    "test_examples",
    "diff_acc",
    "diff_acc_low",
    "diff_acc_high",
    "diff_f1",
    "diff_f1_low",
    "diff_f1_high",
    "p_mcnemar",
    "no_loss",
]
#: The best deployed runtime's test predictions paired with the baseline's PyTorch fp32 ones: what
#: serving the pruned model costs in accuracy, with the interval that says whether it is a loss.
DEPLOYED_DIFF_COLUMNS = ["deployed_diff_acc", "deployed_diff_acc_low", "deployed_diff_acc_high", "deployed_p_mcnemar"]
COLUMNS = [
    "row",
    "status",
    "params_M",
    "reduction_pct",
    "encoder_params_M",
    "vocab_size",
    "embedding_params_M",
    "heldout_unk_pct",
    "speedup",
    "analytic_speedup",
    "latency_ms",
    "deployed_runtime",
    "deployed_speedup",
    "deployed_accuracy",
    *DEPLOYED_DIFF_COLUMNS,
    "accuracy",
    "macro_f1",
    *INTERVAL_COLUMNS,
    "energy_kwh",
    "co2_kg",
    "sparsity",
    "heads_left",
    "ffn_left",
    "job_dir",
]


def find_jobs(folders: list[str | Path]) -> list[Path]:
    """Job folders: those with a results.json, plus numbered multirun folders that lack one (failed).
    A results.json inside another job's folder is a part of that job (a CV fold), not a row."""
    jobs: set[Path] = set()
    for folder in map(Path, folders):
        if not folder.exists():
            raise FileNotFoundError(f"report: {folder} does not exist")
        jobs.update(p.parent for p in folder.rglob("results.json"))
        jobs.update(p.parent for p in folder.rglob(".hydra") if not (p.parent / "results.json").exists())
    return sorted(j for j in jobs if not any(parent in jobs for parent in j.parents))


def row_name(results: dict[str, Any]) -> str:
    cfg = results.get("config", {})
    prune, distill = cfg.get("prune") or {}, cfg.get("distill") or {}
    if not prune.get("sparsity"):
        return "baseline" if not distill else "baseline + KD"
    name = f"{round(100 * prune['sparsity'])}% pruning"
    return name.replace(" pruning", " + KD") if distill else name


def job_row(job: Path) -> dict[str, Any]:
    path = job / "results.json"
    if not path.is_file():
        return {"row": job.name, "status": "missing", "job_dir": str(job)}
    r = json.loads(path.read_text(encoding="utf-8"))
    row: dict[str, Any] = {
        "row": row_name(r) if "config" in r else job.name,
        "status": r.get("status"),
        "job_dir": str(job),
    }
    if r.get("status") != "completed":
        row["error"] = r.get("error")
        return row
    metrics = r.get("metrics_final") or r.get("metrics_compacted") or r["metrics"]
    speed = r.get("speed", {})
    carbon = r.get("carbon", {})
    energy = [carbon.get(k, {}).get("energy_kwh") for k in ("training", "inference")]
    co2 = [carbon.get(k, {}).get("emissions_kg") for k in ("training", "inference")]
    row.update(
        params_M=r["params"]["total"] / 1e6,
        encoder_params_M=r["params"]["encoder"] / 1e6,
        vocab_size=r.get("vocab", {}).get("vocab_size_after"),
        embedding_params_M=r["params"]["word_embeddings"] / 1e6,
        heldout_unk_pct=100 * r["vocab"]["heldout_unk_rate"] if "vocab" in r else None,
        speedup=speed.get("speedup", 1.0 if not r.get("pruning") else None),  # the dense model is the 1.0 reference
        analytic_speedup=r["dense"]["flops_per_token"] / r["flops_per_token"],
        latency_ms=speed.get("latency_ms"),
        # fastest verified runtime of the job's deploy section (blockprune.deploy), over dense PyTorch fp32
        deployed_runtime=(r.get("deploy") or {}).get("best", {}).get("runtime"),
        deployed_speedup=(r.get("deploy") or {}).get("best", {}).get("speedup"),
        deployed_accuracy=_percent((r.get("deploy") or {}).get("best", {}).get("accuracy")),
        accuracy=100 * metrics["test/acc"],
        macro_f1=100 * metrics["test/f1_macro"],
        energy_kwh=sum(e for e in energy if e is not None) if any(e is not None for e in energy) else None,
        co2_kg=sum(c for c in co2 if c is not None) if any(c is not None for c in co2) else None,
        sparsity=(r.get("pruning") or {}).get("sparsity_encoder_linear", 0.0),
        heads_left=(r.get("compaction") or {}).get("heads_left"),
        ffn_left=(r.get("compaction") or {}).get("ffn_neurons_left"),
        _dense_params=r["dense"]["params"]["total"],
        _seed=r.get("config", {}).get("seed"),
        _predictions=r.get("predictions"),
        _deployed_points=_deployed_points(r.get("deploy")),
        _deployed_predictions=_deployed_predictions(r),
    )
    return row


def _deployed_predictions(r: dict[str, Any]) -> dict[str, list] | None:
    """The best deployed runtime's test predictions as a prediction record (the deploy section keeps
    them in the job's test order, pooled over folds in fold order like ``predictions``)."""
    deploy, record = r.get("deploy") or {}, r.get("predictions")
    pred = ((deploy.get("runtimes") or {}).get((deploy.get("best") or {}).get("runtime")) or {}).get("predictions")
    if not record or pred is None or len(pred) != len(record["id"]):
        return None
    return {"id": record["id"], "target": record["target"], "pred": list(pred)}


def _deployed_points(deploy: dict[str, Any] | None) -> list[tuple[str, float, float]]:
    """(runtime, speed-up over dense PyTorch fp32 at the largest batch, accuracy %) of each verified runtime."""
    points = []
    for name, rt in ((deploy or {}).get("runtimes") or {}).items():
        speedups = rt.get("speedup_vs_dense_torch") or {}
        if rt.get("verified") and rt.get("accuracy") is not None and speedups:
            largest = max(speedups, key=lambda k: int(str(k).rsplit("_", 1)[-1]))
            points.append((name, float(speedups[largest]), 100 * float(rt["accuracy"])))
    return points


#: Written by ``blockprune table1`` into the study folder: where its baseline(s) live.
STUDY_FILE = "study.json"


def with_study_baselines(folders: list[str | Path]) -> list[Path]:
    """``folders`` plus the baselines their ``study.json`` names (a ``--baseline`` outside the study)."""
    out = [Path(f) for f in folders]
    for folder in list(out):
        record = folder / STUDY_FILE
        if record.is_file():
            for base in json.loads(record.read_text(encoding="utf-8")).get("baselines", []):
                base = Path(base).resolve()
                if base.exists() and not any(f.resolve() in (base, *base.parents) for f in out):
                    out.append(base)
    return out


def build_table(folders: list[str | Path]) -> pd.DataFrame:
    """One row per job under ``folders`` (and the baselines their study.json names)."""
    folders = with_study_baselines(folders)
    rows = [job_row(j) for j in find_jobs(folders)]
    if not rows:
        raise FileNotFoundError(
            f"report: no job folders (results.json or .hydra/) under {', '.join(map(str, folders))}"
        )
    table = pd.DataFrame(rows)
    private = ["_dense_params", "error", "_seed", "_predictions", "_deployed_points", "_deployed_predictions"]
    for col in COLUMNS + private:
        if col not in table:
            table[col] = None
    table = with_intervals(table)
    base = table[(table["row"] == "baseline") & (table["status"] == "completed")]
    base_params = float(base["params_M"].iloc[0]) * 1e6 if len(base) else None
    ref = table["_dense_params"].where(table["_dense_params"].notna(), base_params)
    table["reduction_pct"] = 100 * (1 - table["params_M"] * 1e6 / ref)
    order = {"baseline": 0}
    table["_order"] = table["row"].map(lambda r: order.get(r, 1 + ("KD" in str(r)) * 10 + _pct(r) / 100))
    return table.sort_values(["_order", "row"]).drop(columns=["_order", "_dense_params"]).reset_index(drop=True)


def with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """One line per completed row: the mean over its seeds (with std), the 95 % bootstrap interval
    of its pooled test accuracy, and its paired comparison with the baseline of the same seed
    (the first baseline when that seed has none). Jobs that did not complete stay one line each."""
    done, rest = table[table["status"] == "completed"], table[table["status"] != "completed"]
    base = done[done["row"] == "baseline"]
    base_preds = {s: p for s, p in zip(base["_seed"], base["_predictions"]) if p}
    lines = []
    for name, group in done.groupby("row", sort=False):
        line = group.iloc[0].copy()
        for col in group.columns:
            if col not in ("_seed", "_predictions") and pd.api.types.is_numeric_dtype(group[col]) and len(group) > 1:
                line[col] = group[col].mean()
        line["seeds"] = len(group)
        served = [r for r in group["deployed_runtime"] if isinstance(r, str)]
        if served:  # seeds may serve different runtimes; the speed-up and accuracy are their means
            line["deployed_runtime"] = " / ".join(dict.fromkeys(served))
        line["accuracy"], line["accuracy_std"] = mean_std(group["accuracy"].tolist())
        line["macro_f1"], line["macro_f1_std"] = mean_std(group["macro_f1"].tolist())
        line["job_dir"] = "; ".join(group["job_dir"])
        records = [p for p in group["_predictions"] if p]
        if records and len(records) == len(group):
            iv = record_interval(records)
            line["acc_low"], line["acc_high"] = iv["acc_low"], iv["acc_high"]
            pairs = [base_preds.get(s, next(iter(base_preds.values()), None)) for s in group["_seed"]]
            if name != "baseline" and all(pairs):
                diff = compare_to_baseline(pairs, records)
                line["test_examples"] = diff["examples"]
                for col in INTERVAL_COLUMNS:
                    if col in diff:
                        line[col] = diff[col]
            deployed = [d if isinstance(d, dict) else None for d in group["_deployed_predictions"]]  # NaN: none
            if all(deployed) and all(pairs):  # the baseline's own deployed runtime too: int8 is not free
                diff = compare_to_baseline(pairs, deployed)
                for col in DEPLOYED_DIFF_COLUMNS:
                    line[col] = diff[col.removeprefix("deployed_")]
        lines.append(line)
    out = pd.concat([pd.DataFrame(lines), rest], ignore_index=True) if lines else rest
    return out.drop(columns=["_seed", "_predictions", "_deployed_predictions"])


def _pct(name: str) -> float:
    try:
        return float(str(name).split("%")[0])
    except ValueError:
        return 99.0


def to_markdown(table: pd.DataFrame) -> str:
    headers = [
        "row",
        "params (M)",
        "reduction",
        "speed-up",
        "analytic",
        "latency (ms)",
        "deployed: runtime, speed-up, accuracy, Δ vs baseline [paired 95 % CI]",
        "accuracy",
        "macro-F1",
        "accuracy 95 % CI",
        "Δ accuracy vs baseline [paired 95 % CI]",
        "McNemar p",
        "no loss",
        "encoder (M)",
        "embeddings (M)",
        "vocab",
        "held-out UNK",
        "energy (kWh)",
        "CO2 (kg)",
        "status",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, r in table.iterrows():
        cells = [
            r["row"],
            _f(r["params_M"], ".2f"),
            _f(r["reduction_pct"], ".1f", "%"),
            _f(r["speedup"], ".2f", "x"),
            _f(r["analytic_speedup"], ".2f", "x"),
            _f(r["latency_ms"], ".2f"),
            _deployed(r),
            _pm(r, "accuracy"),
            _pm(r, "macro_f1"),
            _ci(r["acc_low"], r["acc_high"]),
            _diff(r),
            _f(r["p_mcnemar"], ".3g"),
            {True: "yes", False: "no"}.get(r["no_loss"], "—"),
            _f(r["encoder_params_M"], ".2f"),
            _f(r["embedding_params_M"], ".2f"),
            _f(r["vocab_size"], ".0f"),
            _f(r["heldout_unk_pct"], ".2f", "%"),
            _f(r["energy_kwh"], ".2e"),
            _f(r["co2_kg"], ".2e"),
            r["status"] if r["status"] == "completed" else f"**{r['status']}**",
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines.append(
        f"\nIntervals: 95 % bootstrap over test examples; Δ is row − baseline on the same examples (paired "
        f"bootstrap, McNemar's exact p). No loss: the paired interval's lower bound is at least "
        f"{NO_LOSS_POINTS} points."
    )
    return "\n".join(lines) + "\n"


def _percent(x: Any) -> float | None:
    return None if x is None else 100 * x


def _deployed(r: pd.Series) -> str:
    """The best deployed runtime, its speed-up over the dense model in PyTorch fp32, its accuracy."""
    if not isinstance(r.get("deployed_runtime"), str):
        return "—"
    text = f"{r['deployed_runtime']} {_f(r['deployed_speedup'], '.2f', 'x')} {_f(r['deployed_accuracy'], '.2f')}"
    if _f(r.get("deployed_diff_acc"), ".2f") != "—":
        low, high = r["deployed_diff_acc_low"], r["deployed_diff_acc_high"]
        text += f", {r['deployed_diff_acc']:+.2f} {_ci(low, high, '+')}"
    return text


def _pm(r: pd.Series, col: str) -> str:
    """Mean, with ± the standard deviation over seeds when there are several."""
    std = r.get(f"{col}_std")
    several = _f(r.get("seeds"), ".0f") not in ("—", "1")
    return _f(r[col], ".2f") + (f" ± {std:.2f} (n={r['seeds']:.0f})" if several and _f(std, ".2f") != "—" else "")


def _ci(low: Any, high: Any, sign: str = "") -> str:
    return "—" if _f(low, ".2f") == "—" else f"[{low:{sign}.2f}, {high:{sign}.2f}]"


def _diff(r: pd.Series) -> str:
    return (
        "—"
        if _f(r["diff_acc"], ".2f") == "—"
        else f"{r['diff_acc']:+.2f} {_ci(r['diff_acc_low'], r['diff_acc_high'], '+')}"
    )


def _f(value: Any, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:{spec}}{suffix}"


def plot(table: pd.DataFrame, path: Path) -> None:
    """Accuracy against measured speed-up, each point labelled (the paper's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = table[(table["status"] == "completed") & table["speedup"].notna()]
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for kd, marker, label in ((False, "o", "pruning"), (True, "s", "pruning + KD")):
        part = done[done["row"].str.contains("KD") == kd]
        low = (part["accuracy"] - part["acc_low"].astype(float)).clip(lower=0).fillna(0)
        high = (part["acc_high"].astype(float) - part["accuracy"]).clip(lower=0).fillna(0)
        ax.errorbar(part["speedup"], part["accuracy"], yerr=[low, high], fmt=marker, ms=7, capsize=3, label=label)
        for _, r in part.iterrows():
            ax.annotate(r["row"], (r["speedup"], r["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    deployed = [(rt, x, y) for pts in done.get("_deployed_points", []) if isinstance(pts, list) for rt, x, y in pts]
    for i, runtime in enumerate(
        sorted({rt for rt, _, _ in deployed})
    ):  # each serving runtime, verified on the test split
        xs, ys = zip(*[(x, y) for rt, x, y in deployed if rt == runtime])
        ax.scatter(xs, ys, marker="^v<>Dx+"[i % 7], s=30, alpha=0.7, label=f"deployed: {runtime}")
    ax.set_xlabel("measured inference speed-up over the dense baseline in PyTorch fp32 (x)")
    ax.set_ylabel("test accuracy (%), 95 % bootstrap interval")
    ax.set_title("Accuracy vs speed-up")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_report(folders: list[str | Path], out_dir: str | Path) -> pd.DataFrame:
    """Write table1.md, table1.csv and accuracy_vs_speedup.png to ``out_dir``; return the table."""
    out = Path(out_dir)
    table = build_table(folders)
    with atomic_path(out / "table1.csv") as tmp:
        public_columns(table).to_csv(tmp, index=False)
    with atomic_path(out / "table1.md") as tmp:
        tmp.write_text(to_markdown(table), encoding="utf-8")
    plot(table, out / "accuracy_vs_speedup.png")
    failed = table[table["status"] != "completed"]
    if len(failed):
        log.warning("report: %d job(s) did not complete: %s", len(failed), ", ".join(failed["row"]))
    return table


def public_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table without its private columns (``_deployed_points``, pooled predictions: lists for the
    plot and the paired intervals), as table1.csv and W&B get it."""
    return table.drop(columns=[c for c in table.columns if str(c).startswith("_")])


def log_to_wandb(table: pd.DataFrame, out_dir: str | Path, group: str) -> Path | None:
    """Log the table (``wandb.Table``) and the plot to an offline W&B run in the study's group
    (the group of its jobs' runs, blockprune.run_names); ``group`` (the preset) becomes a tag."""
    from blockprune.config import project_root
    from blockprune.run_names import run_group, run_name

    try:
        import wandb
    except ImportError:
        log.info("report: wandb is not installed; the table and plot are only on disk")
        return None
    out = Path(out_dir)
    log_dir = project_root() / "outputs"
    with redacted_argv():  # W&B records the command line (a study's overrides) in the run's metadata
        run = wandb.init(
            project="blockprune",
            group=run_group(out, log_dir),
            name=run_name(out / "report", log_dir),
            job_type="report",
            tags=[group],
            dir=str(out),
            mode="offline",
            reinit="finish_previous",
        )
    public = public_columns(table)  # W&B cannot type the private columns' lists
    run.log(
        {
            "table1": wandb.Table(dataframe=public.astype(object).where(public.notna(), None)),
            "accuracy_vs_speedup": wandb.Image(str(out / "accuracy_vs_speedup.png")),
        }
    )
    run.finish()
    return Path(run.dir)

"""Paired comparison of each ablation row with the dense model, from the runs' results.json files.

Usage: python summarize.py <runs dir> [names...]  ->  copies each run's results.json (minus bulky
data reports) to <name>/results.json here and writes summary.json (blockprune.evaluation's paired
bootstrap and McNemar test on the 1,500 test sentences).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from blockprune.evaluation import compare_to_baseline, record_interval, record_metrics

HERE = Path(__file__).parent


def record(name: str, results: dict) -> dict:
    """The test prediction record of the saved (compacted) model; for the dense job, which ran
    before jobs kept them, the one dense_and_trim.py recomputed from its saved model."""
    if results.get("predictions"):
        return results["predictions"]
    return json.loads((HERE / name / "predictions.json").read_text())


def main(runs: Path, names: list[str]) -> None:
    loaded = {}
    for name in names:
        path = runs / name / "results.json"
        if not path.is_file() and (HERE / name / "results.json").is_file():  # written here (dense_trimmed)
            loaded[name] = json.loads((HERE / name / "results.json").read_text())
            continue
        if not path.is_file():
            print(f"{name}: no results.json (not finished)")
            continue
        results = json.loads(path.read_text())
        slim = {k: v for k, v in results.items() if k not in ("data",)}
        (HERE / name).mkdir(exist_ok=True)
        (HERE / name / "results.json").write_text(json.dumps(slim, indent=1) + "\n")
        loaded[name] = results
    base = record("dense", loaded["dense"])
    summary = {}
    for name, results in loaded.items():
        rec = record(name, results)
        m = record_metrics(rec)  # fractions; the rest in points
        row = {"wall_time_s": results.get("wall_time_s"), "acc": 100 * m["test/acc"], "f1": 100 * m["test/f1_macro"],
               **record_interval([rec])}
        if name != "dense":
            row.update(compare_to_baseline([base], [rec], n_boot=2000))
        if name not in ("dense", "dense_trimmed", "kd_logits") and "kd_logits" in loaded:  # the technique's own effect
            versus = compare_to_baseline([record("kd_logits", loaded["kd_logits"])], [rec], n_boot=2000)
            row["vs_kd_logits"] = {k: versus[k] for k in ("diff_acc", "diff_acc_low", "diff_acc_high", "p_mcnemar")}
        summary[name] = row
        print(name, {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items() if k != "vs_kd_logits"},
              row.get("vs_kd_logits"))
    (HERE / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:] or ["dense", "dense_trimmed", "kd_logits", "kd_hidden", "kd_global", "kd_hidden10", "kd_aug", "kd_unlab", "kd_seed1", "kd_long", "kd_long3", "kd_all"])

"""Benchmark results as readable Markdown tables, and as JSON files written atomically."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from blockprune.atomic import write_json
from blockprune.bench.overhead import OVERHEAD_SCHEMA


def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "–"
    return format(x, spec)


def _fmt_count(n: float | None) -> str:
    if n is None:
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def to_markdown(result: Mapping[str, Any]) -> str:
    """Readable Markdown tables for a :func:`benchmark_models` or :func:`training_step_overhead` result."""
    if result.get("schema") == OVERHEAD_SCHEMA:
        return _overhead_markdown(result)
    env, settings = result["environment"], result["settings"]
    lines = [
        "# Inference benchmark",
        "",
        f"- date: {env['date']}",
        f"- device: {env['device']} ({env.get('device_name')}), torch {env['torch']}, "
        f"transformers {env.get('transformers')}, threads {settings['threads']} (cpu_count {env.get('cpu_count')})",
        f"- warm-up {settings['warmup']}, repeats {settings['repeats']} (interleaved round-robin), "
        f"typical seq_len {settings['typical_seq_len']}, baseline **{result['baseline']}**",
        *_cpu_line(env),
        "",
        "## Models",
        "",
        "| model | backend | params | encoder params | heads per layer | FFN width per layer |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, info in result["models"].items():
        p = info.get("parameters", {})
        lines.append(
            f"| {name} | {info['backend']} | {_fmt_count(p.get('total'))} | {_fmt_count(p.get('encoder'))} | "
            f"{_join(info.get('heads_per_layer'))} | {_join(info.get('ffn_per_layer'))} |"
        )
    ok = [c for c in result["cells"] if c["status"] == "ok"]
    if ok:
        names = list(result["models"])
        lines += ["", "## Speed-up vs baseline (ratio of median latencies; analytic in brackets)", ""]
        lines.append("| dtype | batch | seq_len | " + " | ".join(names) + " |")
        lines.append("|---|---:|---:|" + "---:|" * len(names))
        for c in ok:
            row = []
            for n in names:
                r = c["results"].get(n, {})
                row.append(
                    f"{_fmt(r.get('speedup'))}× ({_fmt(r.get('analytic_speedup'))}×)"
                    if r.get("status") == "ok"
                    else "–"
                )
            seq = f"{c['seq_len']}{' (typical)' if c.get('typical') else ''}"
            lines.append(f"| {c['dtype']} | {c['batch']} | {seq} | " + " | ".join(row) + " |")
    for c in ok:
        seq = f"{c['seq_len']}{' (typical)' if c.get('typical') else ''}"
        lines += [
            "",
            f"### {c['device']} {c['dtype']}, batch {c['batch']}, seq_len {seq}, {c['repeats']} repeats",
            "",
            "| model | median ms | p10–p90 ms | IQR ms | seq/s | speed-up | analytic speed-up | measured/analytic "
            "| FLOPs/token | GFLOP/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in c["results"].items():
            if r.get("status") != "ok":
                lines.append(f"| {name} | skipped: {r.get('note') or ''} | | | | | | | | |")
                continue
            lines.append(
                f"| {name} | {_fmt(r['median_ms'], '.3f')} | {_fmt(r['p10_ms'], '.3f')}–{_fmt(r['p90_ms'], '.3f')} "
                f"| {_fmt(r['iqr_ms'], '.3f')} | {_fmt(r['throughput_seq_per_s'], '.1f')} | {_fmt(r['speedup'])}× "
                f"| {_fmt(r['analytic_speedup'])}× | {_fmt(r['measured_over_analytic'])} "
                f"| {_fmt_count(r['flops_per_token'])} | {_fmt(r['achieved_gflops_per_s'], '.1f')} |"
            )
        if c.get("note"):
            lines += ["", f"Note: {c['note']}"]
    skipped = [c for c in result["cells"] if c["status"] != "ok"]
    if skipped:
        lines += ["", "## Skipped cells", ""]
        lines += [f"- {c['dtype']} batch {c['batch']} × seq_len {c['seq_len']}: {c['note']}" for c in skipped]
    if result.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in dict.fromkeys(result["notes"])]
    return "\n".join(lines) + "\n"


def _cpu_line(env: Mapping[str, Any]) -> list[str]:
    """The CPU model and its int8/bf16 flags (results written before flags were recorded have none)."""
    if "cpu_flags" not in env:
        return []
    return [f"- cpu: {env.get('cpu')}; flags: {', '.join(env['cpu_flags']) or 'none of avx2/avx512/amx'}"]


def _join(values) -> str:
    return "–" if not values else " ".join(str(v) for v in values)


def _overhead_markdown(result: Mapping[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# Training-step overhead",
        "",
        f"- date: {env['date']}, device: {env['device']} ({env.get('device_name')}), torch {env['torch']}, "
        f"threads {env['torch_threads']}; {result['repeats']} interleaved repeats after {result['warmup']} warm-up",
        *_cpu_line(env),
        "",
        "| step | median ms | p10–p90 ms | × dense |",
        "|---|---:|---:|---:|",
    ]
    for name, st in result["steps"].items():
        lines.append(
            f"| {name} | {_fmt(st['median_ms'], '.2f')} | {_fmt(st['p10_ms'], '.2f')}–{_fmt(st['p90_ms'], '.2f')} "
            f"| {_fmt(result['ratio_vs_dense'][name])} |"
        )
    return "\n".join(lines) + "\n"


def save(result: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``result`` as JSON atomically (a reader never sees a half-written file)."""
    write_json(path, result)
    return Path(path)

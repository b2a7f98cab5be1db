"""The ``blockprune`` console script: train, table1, report, bench, export, predict, trim-vocab."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from blockprune.atomic import atomic_path
from blockprune.errors import BlockpruneError
from blockprune.redact import install_log_filter

log = logging.getLogger("blockprune")


def _model_dirs(paths: list[str]) -> dict[str, Path]:
    """Model folders by a short name; a job folder (with results.json) stands for its saved model."""
    from blockprune.report import row_name

    out: dict[str, Path] = {}
    for p in map(Path, paths):
        results = p / "results.json"
        if results.is_file():
            r = json.loads(results.read_text())
            name, model_dir = row_name(r), Path(r["model_dir"])
        else:
            name, model_dir = (p.name if p.name != "model" else p.parent.name), p
        out[name if name not in out else str(p)] = model_dir
    return out


def cmd_bench(args: argparse.Namespace) -> int:
    from blockprune import load_model
    from blockprune.bench import benchmark_models, save, to_markdown

    dirs = _model_dirs([args.baseline, *args.models])
    models = {name: load_model(path) for name, path in dirs.items()}
    tokenizer, calibration = None, []
    if args.calibration:  # openvino-int8's training texts, tokenised as the baseline tokenises them
        from blockprune.deploy.predict import read_texts
        from blockprune.models import load_tokenizer

        tokenizer, calibration = load_tokenizer(str(next(iter(dirs.values())))), read_texts(args.calibration)[0]
    result = benchmark_models(
        models,
        batch_sizes=args.batch_sizes,
        seq_lens=[None if s == 0 else s for s in args.seq_lens],
        typical_seq_len=args.typical_seq_len,
        device=args.device,
        dtypes=args.dtypes,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        onnxruntime=args.onnx,
        runtimes=args.runtimes,
        tokenizer=tokenizer,
        calibration_texts=calibration,
    )
    markdown = to_markdown(result)
    print(markdown)
    if args.out:
        save(result, Path(args.out) / "bench.json")
        with atomic_path(Path(args.out) / "bench.md") as tmp:  # a folder or link named bench.md is not written through
            tmp.write_text(markdown, encoding="utf-8")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from blockprune.bench import save, to_markdown
    from blockprune.bench.train_steps import measure_step_overhead

    block = "head" if args.attention_block == ["head"] else [int(x) for x in args.attention_block]
    result = measure_step_overhead(
        str(next(iter(_model_dirs([args.model]).values()))),
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        accelerator=args.accelerator,
        precision=args.precision,
        sparsity=args.sparsity,
        attention_block=block,
        repeats=args.repeats,
    )
    print(to_markdown(result))
    if args.out:
        save(result, Path(args.out) / "step_overhead.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from blockprune import load_model
    from blockprune.models import load_tokenizer

    model_dir = next(iter(_model_dirs([args.model]).values()))
    model = load_model(model_dir)
    tokenizer = load_tokenizer(str(model_dir))
    if args.onnx:  # one float32 file anywhere (the pre-deploy behaviour)
        from blockprune.deploy.onnx_export import check_onnx, export_onnx

        path = export_onnx(model, tokenizer, args.onnx, overwrite=args.overwrite)
        print(f"wrote {path}; max |logit difference| vs PyTorch: {check_onnx(model, path):.2e}")
        return 0
    from blockprune.deploy.cli import export_folder

    record = export_folder(model, tokenizer, model_dir, args)
    print(json.dumps({k: record[k] for k in ("fastest", "selected_by", "best")}, indent=2, ensure_ascii=False))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from blockprune.deploy.cli import predict_command

    return predict_command(next(iter(_model_dirs([args.model]).values())), args)


def cmd_report(args: argparse.Namespace) -> int:
    from blockprune.report import to_markdown, write_report

    table = write_report(args.folders, args.out or args.folders[0])
    print(to_markdown(table))
    return int((table["status"] != "completed").any())


def cmd_table1(args: argparse.Namespace) -> int:
    from blockprune.study import run_study

    return run_study(args.preset, args.out, args.overrides, baseline=args.baseline)


def cmd_trim_vocab(args: argparse.Namespace) -> int:
    from blockprune.vocab import trim_vocabulary_folder

    stats = trim_vocabulary_folder(
        args.model,
        args.out,
        args.corpus,
        text_column=args.text_column,
        heldout_files=args.heldout,
        keep_script_chars=args.keep_script_chars,
        overwrite=args.overwrite,
    )
    print(json.dumps(stats, indent=2, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blockprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser(
        "train", help="run train.py's Hydra main (same overrides, e.g. -m prune.sparsity=0.25,0.5)", add_help=False
    )

    p = sub.add_parser("table1", help="the whole study: baseline, pruned sweep, report")
    p.add_argument(
        "--preset", default="table1", help="experiment preset with a study section (table1, table1_cpu, ...)"
    )
    p.add_argument("--out", help="study folder (default outputs/table1/<timestamp>)")
    p.add_argument("--baseline", help="an existing baseline job folder: prune from it instead of training one")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for every job")
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("report", help="study folders -> table1.md/csv + accuracy_vs_speedup.png")
    p.add_argument("folders", nargs="+")
    p.add_argument("--out", help="where to write (default: the first folder)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="time a baseline against compacted models, side by side in one process")
    p.add_argument("baseline", help="model folder or job folder (results.json) of the baseline")
    p.add_argument("models", nargs="+", help="model or job folders to compare")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", nargs="+", default=["float32"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32, 128])
    p.add_argument("--seq-lens", nargs="+", type=int, default=[0, 128, 512], help="0 = the typical length")
    p.add_argument("--typical-seq-len", type=int, default=40, help="the data's typical padded length")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--onnx", action="store_true", help="also time ONNX exports in onnxruntime (CPU)")
    p.add_argument(
        "--runtimes",
        nargs="+",
        default=[],
        help="also time the serving runtimes onnx, onnx-int8, openvino, openvino-int8 (CPU) and torch-compile "
        "(CUDA graphs on a GPU)",
    )
    p.add_argument(
        "--calibration",
        help="openvino-int8: CSV/TSV/JSONL (Text column) or .txt of training texts that calibrate int8",
    )
    p.add_argument("--out", help="folder for bench.json and bench.md")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-train", help="masked and distillation training steps over the dense step")
    p.add_argument("model", help="model or job folder")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=40)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--precision", default="32-true", help="Lightning precision: 32-true, bf16-mixed, 16-mixed")
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--attention-block", nargs="+", default=["32", "32"], help="rows cols, or head")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out")
    p.set_defaults(func=cmd_bench_train)

    p = sub.add_parser(
        "export", help="export a saved classifier to fast runtimes (into its folder), re-test and time them"
    )
    p.add_argument("model", help="model folder or job folder (results.json)")
    p.add_argument(
        "--runtime",
        nargs="+",
        default=["onnx", "onnx-int8"],
        help="onnx (model.onnx), onnx-int8 (model_quantized.onnx), openvino (openvino_model.xml, optional extra), "
        "openvino-int8 (openvino_model_int8.xml, needs --calibration), torch-bf16, torch-int8",
    )
    p.add_argument(
        "--calibration",
        help="openvino-int8: CSV/TSV/JSONL (or .txt) of training texts that calibrate int8 (not the --texts)",
    )
    p.add_argument(
        "--texts", help="CSV/TSV/JSONL (or .txt) texts to re-test on (default: random inputs, agreement only)"
    )
    p.add_argument("--text-column", default="Text")
    p.add_argument("--label-column", help="with --texts: labels, so each runtime's accuracy is measured")
    p.add_argument("--seq-len", type=int, help="timing length (default: 95th percentile of --texts, else 40)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int)
    p.add_argument("--per-tensor", action="store_true", help="int8: one scale per weight matrix (default: per row)")
    p.add_argument("--max-accuracy-drop", type=float, default=0.5, help="points; runtimes losing more are not served")
    p.add_argument("--onnx", help="instead: write one float32 .onnx file at this path (no deploy.json)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace whatever is at the --onnx path (even a folder), or ONNX files in MODEL blockprune did not write",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="label + score for each text of a file (or - for stdin), on the fastest runtime")
    p.add_argument("model", help="model folder or job folder (results.json)")
    p.add_argument("input", help="CSV/TSV/JSONL/.txt file, or - for stdin (JSON Lines, or one text per line)")
    p.add_argument("--out", help="output file (default stdout); .csv writes CSV")
    p.add_argument("--format", choices=["csv", "tsv", "jsonl", "lines"], help="input format (default: by suffix)")
    p.add_argument("--output-format", choices=["jsonl", "csv"], help="default: by --out suffix, else jsonl")
    p.add_argument("--text-column", default="Text")
    p.add_argument("--runtime", help="override the runtime recorded in deploy.json (torch, onnx, onnx-int8, ...)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int)
    p.add_argument("--with-text", action="store_true", help="repeat each text in the output")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("trim-vocab", help="keep only the vocabulary a corpus uses (tokenizer + embeddings)")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--corpus", nargs="+", required=True, help="CSV/TSV/JSONL files whose texts must tokenise as before")
    p.add_argument("--text-column", default="Text")
    p.add_argument("--heldout", nargs="*", default=[], help="files to report the UNK rate on")
    p.add_argument("--keep-script-chars", action="store_true", help="also keep single characters of the scripts seen")
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT even if it is a folder trim-vocab did not write"
    )
    p.set_defaults(func=cmd_trim_vocab)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from blockprune.main import main as hydra_main

        sys.argv = [sys.argv[0], *argv[1:]]
        hydra_main()
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    install_log_filter()  # no secret of a command's arguments reaches the terminal or a log file
    try:
        return args.func(args)
    except (BlockpruneError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The `fer-bench` command line: data info|download|audit, run, report, maps, robustness, verify, compare."""

from __future__ import annotations

import argparse
import math
import sys

from fer_bench import CLASS_NAMES, USAGES, __version__
from fer_bench.errors import FerBenchError


def _add_data_arg(p):
    p.add_argument("--data", metavar="PATH",
                   help="FER-2013 folder (Kaggle layout) or fer2013.csv; default: $FER2013_DIR, ./data/fer2013, "
                        "the kagglehub cache, else the built-in synthetic data")
    p.add_argument("--rgb-to-gray", action="store_true",
                   help="convert RGB images to grayscale instead of rejecting them")


def cmd_data_info(args) -> int:
    from fer_bench.data import load_dataset

    ds = load_dataset(args.data, rgb_to_gray=args.rgb_to_gray)
    counts = ds.counts()
    print(f"dataset: {ds.name}  source: {ds.source}")
    print(f"fingerprint: {ds.fingerprint}")
    width = max(len(c) for c in CLASS_NAMES)
    print(f"{'class':<{width}}  " + "  ".join(f"{u:>11}" for u in USAGES))
    for c in CLASS_NAMES:
        print(f"{c:<{width}}  " + "  ".join(f"{counts[u][c]:>11,}" for u in USAGES))
    print(f"{'total':<{width}}  " + "  ".join(f"{sum(counts[u].values()):>11,}" for u in USAGES))
    return 0


def cmd_data_download(args) -> int:
    from fer_bench.data.discovery import download_fer2013

    path = download_fer2013()
    print(f"FER-2013 is at {path}")
    return 0


def cmd_data_audit(args) -> int:
    from fer_bench.audit import run_audit

    run_audit(data=args.data, out=args.out, rgb_to_gray=args.rgb_to_gray)
    return 0


def cmd_run(args) -> int:
    from fer_bench.plugins import load_plugin
    from fer_bench.run import run_grid

    for plugin in args.plugin:
        load_plugin(plugin)

    models = _models_with_settings(args.models, args.set)
    run_grid(data=args.data, tasks=args.tasks, models=models, seeds=args.seeds, out=args.out,
             force=args.force, quick=args.quick, rgb_to_gray=args.rgb_to_gray, report=not args.no_report,
             reference=args.reference, plugins=tuple(args.plugin), workers=args.workers,
             scheduler=args.scheduler, robustness=not args.no_robustness)
    return 0


def _models_with_settings(models: list[str] | None, settings: list[str]) -> list[str] | None:
    """The --models list with each model named in a --set MODEL.PARAM=VALUE replaced by its variant
    ("cnn[test_views=2]"); without --models, the default grid's models (those whose requirements are installed)."""
    from fer_bench.models import available_models, missing_requirements, model_variant

    if not settings or models == []:
        return models  # an empty --models is refused by run_grid with the other selections
    assignments: dict[str, dict[str, str]] = {}
    for setting in settings:
        target, sep, value = setting.partition("=")
        model, dot, param = target.partition(".")
        if not (sep and dot and model and param):
            raise FerBenchError(f"--set {setting}: expected MODEL.PARAM=VALUE, e.g. cnn.test_views=2")
        if param in assignments.get(model, {}):
            raise FerBenchError(f"--set {model}.{param} given twice ({assignments[model][param]} and {value}); "
                                "set each parameter once (list variants in --models to run several values)")
        assignments.setdefault(model, {})[param] = value
    names = models if models is not None else [m for m in available_models() if not missing_requirements(m)
                                               or m in assignments]
    for model in assignments:
        if model not in names:
            raise FerBenchError(f"--set {model}.…: model {model!r} is not in the grid ({', '.join(names)})")
    return [model_variant(m, assignments[m]) if m in assignments else m for m in names]


def cmd_report(args) -> int:
    from fer_bench.report import write_report
    from fer_bench.settings import Settings

    write_report(args.out, settings=Settings(reference_model=args.reference))
    return 0


def cmd_maps(args) -> int:
    from fer_bench.cell_maps import store_maps_command
    from fer_bench.storage import default_results_folder

    store_maps_command(args.out or default_results_folder(), force=args.force, data=args.data)
    return 0


def cmd_robustness(args) -> int:
    from fer_bench.cell_robustness import store_robustness_command
    from fer_bench.storage import default_results_folder

    store_robustness_command(args.out or default_results_folder(), force=args.force, data=args.data)
    return 0


def cmd_verify(args) -> int:
    from fer_bench.storage import default_results_folder
    from fer_bench.verify import verify_command

    verify_command(args.out or default_results_folder(), record=args.record)
    return 0


def cmd_compare(args) -> int:
    from fer_bench.compare import View, compare_folders, different_data_message, format_for, render, summary_line
    from fer_bench.storage import atomic_write

    fmt = args.format or (format_for(args.out) if args.out else "text")  # a wrong suffix is refused before work
    comparison = compare_folders(args.a, args.b, allow_different_data=args.allow_different_data)
    if not comparison.same_data:
        print(f"fer-bench: warning: {different_data_message(comparison)}; compared anyway "
              f"(--allow-different-data): differences may come from the data, not the models", file=sys.stderr)
    view = View(only_changed=args.only_changed, timings=args.timings, fail_if_worse=args.fail_if_worse)
    document = render(comparison, fmt, view)
    if args.out:
        try:
            atomic_write(args.out, document)
        except OSError as exc:
            raise FerBenchError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"comparison of {len(comparison.models)} (task, model) written to {args.out}")
        print(summary_line(comparison, view))
    else:
        print(document, end="")
    if comparison.unrecorded_note:
        print(comparison.unrecorded_note, file=sys.stderr)
    failing = view.failing(comparison)
    if failing and not args.out and fmt != "text":  # the verdict stays readable beside a CSV or JSON on stdout
        print(f"fer-bench: compare: {summary_line(comparison, view)}", file=sys.stderr)
    return 1 if failing else 0


def _accuracy_points(text: str) -> float:
    """--fail-if-worse: accuracy points, a finite number >= 0."""
    try:
        points = float(text)
    except ValueError:
        points = math.nan
    if not math.isfinite(points) or points < 0:
        raise argparse.ArgumentTypeError(f"expected accuracy points, a number >= 0 such as 1 or 0.5, got {text!r}")
    return points


def _add_reference_arg(p):
    p.add_argument("--reference", metavar="MODEL", default=None,
                   help="the model every other one is compared against (significance, gains, confusion "
                        "differences, findings); default: cnn where a task has it, else the task's most accurate "
                        "model on PublicTest")


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _model_list(text: str) -> list[str]:
    from fer_bench.models import split_top_level

    return split_top_level(text)


def _seed_list(text: str) -> list[int]:
    """Seeds as a list and ranges: "0-2", "0,1,2", "0-2,5"."""
    seeds = []
    try:
        for part in _csv_list(text):
            first, dash, last = part.partition("-")
            if dash and first:
                if int(last) < int(first):
                    raise ValueError(part)
                seeds += range(int(first), int(last) + 1)
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers and ranges like 0-2 or 0,1,5, got {text!r}") from None
    return seeds


class _OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes (bad --seeds, unknown option) print one line and exit 2, like every fer-bench error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_refill_parser(sub, name: str, func, file_name: str, *, help: str, contents: str) -> None:
    """A command that fills a file computed from the fitted model into the cells stored without it
    (fer_bench.refill): maps, robustness."""
    p = sub.add_parser(name, help=help, description=
                       f"Write runs/<task>/<model>/seed<k>/{file_name} ({contents}) for every cell without one, from "
                       "the cell's fitted model/ folder and the data set's faces; cells without a local model are "
                       f"listed in one line. `fer-bench run` stores {file_name} itself.")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="results folder holding runs/ (default: results/fer2013 if present, else results/synthetic)")
    p.add_argument("--force", action="store_true", help=f"recompute every cell's {file_name}, not only missing ones")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="the data set the cells were computed on (default: the source their manifests name)")
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(prog="fer-bench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fer-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect, download or audit the data set")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("info", help="per-split x per-class counts and the content fingerprint")
    _add_data_arg(p)
    p.set_defaults(func=cmd_data_info)
    p = data_sub.add_parser("download", help="download FER-2013 with kagglehub (needs network and credentials)")
    p.set_defaults(func=cmd_data_download)
    p = data_sub.add_parser("audit", help="find duplicate, leaked, conflicting and blank images")
    _add_data_arg(p)
    p.add_argument("--out", metavar="DIR", help="results folder (default results/<dataset>)")
    p.set_defaults(func=cmd_data_audit)

    p = sub.add_parser("run", help="train and evaluate every (task, model, seed) cell, then report")
    _add_data_arg(p)
    p.add_argument("--tasks", type=_csv_list, default=None, help="comma-separated (default: all registered)")
    p.add_argument("--models", type=_model_list, default=None,
                   help="comma-separated, variants included: cnn,cnn[test_views=2] (default: all registered)")
    p.add_argument("--seeds", type=_seed_list, default=[0],
                   help="seeds as a list and ranges: 0-2, 0,1,2 or 0-2,5 (default: 0)")
    p.add_argument("--out", metavar="DIR", help="results folder (default results/<dataset>)")
    p.add_argument("--force", action="store_true", help="recompute cells that already finished")
    p.add_argument("--quick", action="store_true",
                   help="small, fast model configurations for smoke checks (always used on the synthetic data)")
    p.add_argument("--no-report", action="store_true", help="skip `fer-bench report` at the end")
    p.add_argument("--no-robustness", action="store_true",
                   help="store the cells without robustness.npz (the 60 corrupted PrivateTest predictions; "
                        "`fer-bench robustness` fills them later from the cells' models)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                   help="Python file or module to import first, to register your own models or tasks (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="MODEL.PARAM=VALUE",
                   help="run MODEL with PARAM set (typed like its default; repeatable), named MODEL[PARAM=VALUE] "
                        "in the tables; list a variant in --models (e.g. 'cnn,cnn[test_views=2]') to run both")
    _add_reference_arg(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="run cells on N local worker processes (a Dask LocalCluster; needs "
                            "'fer-bench[distributed]'); default: one after another in this process")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run cells on a running Dask cluster (see docs/usage.md: dask scheduler / dask worker)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="recompute metrics, tables and figures from stored predictions")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="results folder holding runs/ (default: results/fer2013 if present, else results/synthetic)")
    _add_reference_arg(p)
    p.set_defaults(func=cmd_report)

    _add_refill_parser(sub, "maps", cmd_maps, "maps.npz", help="store the saliency maps of cells computed before "
                       "cells stored them (maps.npz), from their local fitted models", contents=
                       "the occlusion and gradient maps, templates and HOG settings the report's saliency figures "
                       "are drawn from")
    _add_refill_parser(sub, "robustness", cmd_robustness, "robustness.npz", help="store the corrupted-PrivateTest "
                       "probabilities of cells computed before cells stored them (robustness.npz), from their local "
                       "fitted models", contents="the model's probabilities on the task's PrivateTest faces under "
                       "every corruption at every severity, for the report's robustness section")

    p = sub.add_parser("verify", help="check every stored cell against its integrity records and structure; "
                                       "--record adds records to cells stored without them", description=
                       "Check every cell of a results folder the way the report reads it: its files against the "
                       "size, sha256 and row counts its manifest records (cells stored without records: by their "
                       "structure only), its maps.npz, and its data set against fer-bench.json. One line per bad "
                       "cell, then a summary; exit 2 when any cell is bad.")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="results folder holding runs/ (default: results/fer2013 if present, else results/synthetic)")
    p.add_argument("--record", action="store_true",
                   help="add integrity records to the cells stored without them that verify (existing records are "
                        "never rewritten)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("compare", help="compare two results folders per (task, model) on the headline split",
                       description="Per task, the PrivateTest accuracy (and macro-F1) of every model in both folders, "
                       "mean over each folder's seeds, B - A, and an exact McNemar test on the images both "
                       "predicted (each folder's seed majority: an image is right when more than half of the "
                       "folder's seeds got it right); flagged better/worse when p < 0.05. Timings only when both "
                       "folders ran on one machine. Exit 1 when --fail-if-worse fails, 2 for a usage or data error.")
    p.add_argument("a", metavar="A", help="first results folder (the reference: differences are B - A)")
    p.add_argument("b", metavar="B", help="second results folder")
    p.add_argument("--format", choices=("text", "md", "html", "csv", "json"), default=None,
                   help="text (default), markdown, a self-contained HTML page, CSV (one row per (task, model)) or "
                        "JSON (the same records and the header)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write to FILE instead of printing (format from --format, else the suffix: .txt .md .html "
                        ".csv .json); the summary line is still printed")
    p.add_argument("--fail-if-worse", type=_accuracy_points, metavar="POINTS", default=None,
                   help="exit 1 when a (task, model) in both folders lost more than POINTS accuracy points in B, "
                        "with p < 0.05, naming it in the last line")
    p.add_argument("--only-changed", action="store_true",
                   help="show only the (task, model) whose accuracy differs significantly")
    p.add_argument("--timings", action="store_true",
                   help="show fit and inference timings even when the folders ran on different machines")
    p.add_argument("--allow-different-data", action="store_true",
                   help="compare folders whose data fingerprints differ (said in the output and on stderr)")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except FerBenchError as exc:
        print(f"fer-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fer-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

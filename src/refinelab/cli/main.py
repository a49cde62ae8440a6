"""The ``refinelab`` command: predict with a trained model, compare experiments, write the PR report.

Heavy libraries (TensorFlow, DVC, matplotlib) are imported inside the subcommand that needs them,
so ``refinelab --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from refinelab import __version__
from refinelab.core.errors import DataError, RefinelabError
from refinelab.core.fileio import ensure_writable
from refinelab.core.runner import debug_requested, environment_error, setup_logging

log = logging.getLogger("refinelab")

# Exit statuses: 1 some image files could not be read (the others were predicted), 2 a usage or input error.
EXIT_FILE_ERRORS = 1
EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command whose reader left.


def predict(args: argparse.Namespace) -> int:
    from refinelab.core.backend import select_backend
    from refinelab.models.artifact import trained_backend

    if not Path(args.model).is_file():  # Before Keras is imported: seconds, for a wrong folder or a typo.
        raise DataError(f"{args.model}: model file not found (`dvc repro` in the project folder writes it; "
                        f"--model names another)")
    if "KERAS_BACKEND" not in os.environ:  # Set by the user, it wins.
        select_backend(trained_backend(args.model))
    from refinelab.cli.predict import Predictor, expand_targets
    from refinelab.prepare.images import IMAGE_SUFFIXES

    predictor = Predictor.load(args.model)
    files, empty_folders = expand_targets(args.images)
    if not files:
        raise DataError(f"no image files in {', '.join(map(str, args.images))} ({', '.join(IMAGE_SUFFIXES)})")
    for folder in empty_folders:
        log.warning("%s: no image files (%s)", folder, ", ".join(IMAGE_SUFFIXES))
    predictions, errors = predictor.predict_files(files, top_k=args.top)
    if args.json:
        print(json.dumps({
            "predictions": [prediction.to_dict() for prediction in predictions],
            "errors": [{"path": error.path, "error": error.error} for error in errors],
        }, indent=2))
    else:
        for prediction in predictions:
            print(f"{prediction.path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in prediction.top))
    for error in errors:
        log.error("%s", error.error)
    return EXIT_FILE_ERRORS if errors else 0


def compare(args: argparse.Namespace) -> int:
    from refinelab.report.compare import compare as write_comparison

    ensure_writable(args.output)  # Before the minutes `dvc exp show` may take.
    write_comparison(Path(args.repo), args.experiments, Path(args.output), all_commits=args.all_commits)
    return 0


def report(args: argparse.Namespace) -> int:
    from refinelab.report.compare import pull_request_report

    ensure_writable(args.output)
    text = pull_request_report(Path(args.repo), args.base, Path(args.output))
    if args.print:
        sys.stdout.write(text)
    return 0


def search(args: argparse.Namespace) -> int:
    from refinelab.cli.search import DvcRunner, load_space, propose, run_study, shared_backups, summary
    from refinelab.params.files import read_config
    from refinelab.report.experiments import dvc

    dimensions = load_space(args.space)
    proposals = propose(dimensions, args.strategy, args.trials, args.seed)
    epochs = args.epochs or read_config(Path(args.repo) / "params.yaml")["epochs"]
    log.info("study %s: %d trials (%s, seed %d), up to %d epochs", args.name, len(proposals), args.strategy,
             args.seed, epochs)
    with shared_backups(Path(args.repo), args.name):
        trials = run_study(args.name, proposals, DvcRunner(Path(args.repo), dvc), epochs, eta=args.halving,
                           jobs=args.jobs)
    print(summary(trials))
    return 0 if any(trial.validation_accuracy is not None for trial in trials) else EXIT_USER_ERROR


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refinelab",
        description="Use and compare the models the refinelab DVC pipeline trains "
        "(the pipeline itself runs with `dvc repro` / `dvc exp run`).",
    )
    parser.add_argument("--version", action="version", version=f"refinelab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help="log debug messages and show the traceback of any error (also REFINELAB_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict_parser = commands.add_parser(
        "predict",
        help="classify image files with a trained model",
        description="Print the most probable classes of each image, prepared exactly as the model's training "
        "data was (size, colour mode, crop/pad/stretch and class names from params.json beside the model). "
        "Unreadable files are reported one by one, the others still predicted; the exit status is then 1.",
    )
    predict_parser.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR",
                                help="image files (JPEG, PNG, BMP, GIF), or folders searched recursively for them")
    predict_parser.add_argument("--model", default="models/model.keras",
                                help="trained model; its params.json must be beside it (default: %(default)s)")
    predict_parser.add_argument("--top", type=positive_int, default=3, metavar="K",
                                help="how many classes to show per image (default: %(default)s)")
    predict_parser.add_argument("--json", action="store_true",
                                help='print JSON: {"predictions": [{"path", "top": [{"class", "probability"}]}], '
                                '"errors": [{"path", "error"}]}')
    predict_parser.set_defaults(handler=predict)

    compare_parser = commands.add_parser(
        "compare",
        help="compare experiments, per dataset: params that differ, key metrics, per-class scores, learning curves",
        description="Write a Markdown (or HTML) report of experiments from `dvc exp show`, one section per dataset "
        "(the `dataset` param): a table of the params that differ between its runs and their key metrics "
        "(metrics/evaluate.json, metrics/timing.json), sorted by test accuracy; their per-class F1, precision "
        "and recall (metrics/test_details.json, folded); and their learning curves overlaid in one PNG, "
        "written beside the report as <name>_learning_curves_<dataset>.png.",
    )
    compare_parser.add_argument("experiments", nargs="*", metavar="EXP",
                                help="experiment names, branch names, revisions or 'workspace' "
                                "(default: the current commit and all its experiments)")
    compare_parser.add_argument("-A", "--all-commits", action="store_true",
                                help="look among the experiments of every commit, not only the current one's")
    compare_parser.add_argument("-o", "--output", default="compare.md",
                                help="the report: Markdown, or a self-contained HTML page if it ends in .html "
                                "(default: %(default)s)")
    compare_parser.add_argument("--repo", default=".", help="the DVC project (default: the current folder)")
    compare_parser.set_defaults(handler=compare)

    report_parser = commands.add_parser(
        "report",
        help="write the pull-request report (what `make report` and the CI comment show)",
        description="Write Markdown with `dvc params diff BASE --md`, `dvc metrics diff BASE --md`, the per-class "
        "scores of BASE and the workspace side by side (metrics/test_details.json, folded), their learning "
        "curves overlaid (<name>_learning_curves.png beside the report), and the workspace's confusion "
        "matrix and most confident mistakes.",
    )
    report_parser.add_argument("--base", default="main", help="git revision to compare with (default: %(default)s)")
    report_parser.add_argument("-o", "--output", default="report.md", help="Markdown report (default: %(default)s)")
    report_parser.add_argument("--print", action="store_true", help="also print the Markdown")
    report_parser.add_argument("--repo", default=".", help="the DVC project (default: the current folder)")
    report_parser.set_defaults(handler=report)
    search_parser = commands.add_parser(
        "search",
        help="search hyperparameters: every trial a DVC experiment, run by DVC's queue",
        description="Propose trials from a search space (YAML: params key -> {choice: [...]} | {uniform: [lo, hi]} | "
        "{loguniform: [lo, hi]} | {int: [lo, hi]}), queue each as `dvc exp run --queue -S ...` named "
        "<name>-<trial>-e<epochs>, run them with `dvc exp run --run-all --jobs N`, and print them by validation "
        "accuracy with the command that keeps the best. With --halving ETA, successive halving: all trials for a "
        "small number of epochs, the best 1/ETA by validation accuracy continue with ETA times the epochs.",
    )
    search_parser.add_argument("space", help="the search space, a YAML file")
    search_parser.add_argument("--name", required=True, help="the study's name, the start of every trial's name")
    search_parser.add_argument("--strategy", choices=("grid", "random"), default="random",
                               help="every combination, or random draws (default: %(default)s)")
    search_parser.add_argument("--trials", type=positive_int, help="how many trials (random: required; grid: the first N)")
    search_parser.add_argument("--seed", type=int, default=0, help="the same seed proposes the same trials (default: 0)")
    search_parser.add_argument("--epochs", type=positive_int,
                               help="each finalist's epochs (default: params.yaml's epochs)")
    search_parser.add_argument("--halving", type=positive_int, default=1, metavar="ETA",
                               help="successive halving: keep the best 1/ETA per rung (default: 1, no halving)")
    search_parser.add_argument("--jobs", type=positive_int, default=1, help="trials run at once (default: 1)")
    search_parser.add_argument("--repo", default=".", help="the DVC project (default: the current folder)")
    search_parser.set_defaults(handler=search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or debug_requested()
    setup_logging(logging.DEBUG if args.verbose or debug else logging.INFO)
    try:
        return args.handler(args)
    except RefinelabError as exc:
        if debug:
            raise
        log.error("%s", exc)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # The reader left (`refinelab predict photos | head -1`): stop quietly, as other commands do. Python
        # would report the pipe again when it flushes stdout at exit: point stdout at nothing (Python's docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        if debug or (message := environment_error(exc)) is None:
            raise
        log.error("%s", message)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())

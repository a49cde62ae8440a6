"""``refinelab compare`` and ``refinelab report``: experiments side by side, from DVC's own records.

Params and metrics come from ``dvc exp show --json`` (or ``dvc params/metrics diff --md``), learning
curves from each revision's dvclive series read through DVC (``dvc.api.read``): nothing is stored
beside what DVC and git already keep.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refinelab.errors import RefinelabError

log = logging.getLogger(__name__)

WORKSPACE = "workspace"
EVALUATION_METRICS = "metrics/evaluate.json"
TRAINING_METRICS = "metrics/train/metrics.json"
MODEL_METRICS = "metrics/model.json"
LIVE_PLOTS_DIR = "metrics/train/plots/metrics"
FIGURES_DIR = "metrics/figures"
# (column, metrics file, dotted key, format); a column no run has is left out.
KEY_METRICS = (
    ("test accuracy", EVALUATION_METRICS, "test.accuracy", "{:.4f}"),
    ("test loss", EVALUATION_METRICS, "test.loss", "{:.4f}"),
    ("top-5 accuracy", EVALUATION_METRICS, "test.top_5_accuracy", "{:.4f}"),
    ("macro F1", EVALUATION_METRICS, "test.macro_avg.f1-score", "{:.4f}"),
    ("ECE", EVALUATION_METRICS, "test.expected_calibration_error", "{:.4f}"),
    ("validation accuracy", EVALUATION_METRICS, "validation_accuracy", "{:.4f}"),
    ("train-test gap", EVALUATION_METRICS, "train_test_gap", "{:+.4f}"),
    ("params", MODEL_METRICS, "total_params", "{:,}"),
    ("train seconds", TRAINING_METRICS, "train_seconds", "{:.1f}"),
    ("images/s", TRAINING_METRICS, "images_per_second", "{:,.0f}"),
    # The health check's verdict (refinelab.health): "ok", or the codes of its warnings.
    ("health", EVALUATION_METRICS, "health", "{}"),
)
ABSENT = "—"


class DvcCommandError(RefinelabError):
    """A ``dvc`` command the report needs failed."""


@dataclass
class Run:
    """One revision DVC knows: the workspace, a commit, or an experiment."""

    name: str
    rev: str  # a git commit, or WORKSPACE
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, flattened to dotted keys
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # metrics file -> flattened values

    def metric(self, path: str, key: str) -> Any:
        return self.metrics.get(path, {}).get(key)


def dvc(args: list[str], repo: Path) -> str:
    """Run ``dvc`` (the one installed beside this Python) in ``repo`` and return its stdout."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise DvcCommandError(f"dvc {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are values."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _run_from_state(name: str, state: dict[str, Any]) -> Run | None:
    data = state.get("data")
    if not data:
        return None
    files = {
        section: {path: flatten(result.get("data") or {}) for path, result in (data.get(section) or {}).items()}
        for section in ("params", "metrics")
    }
    params = {}
    for path, values in files["params"].items():
        # Keys from params files other than params.yaml keep their file's name.
        params.update({key if path == "params.yaml" else f"{path}:{key}": value for key, value in values.items()})
    return Run(name=name, rev=state["rev"], params=params, metrics=files["metrics"])


def runs_from_exp_show(shown: list[dict[str, Any]]) -> tuple[list[Run], list[Run], Run | None]:
    """(baseline commits, finished experiments, workspace) from ``dvc exp show --json``."""
    baselines, experiments, workspace = [], [], None
    for entry in shown:
        if entry["rev"] == WORKSPACE:
            workspace = _run_from_state(WORKSPACE, entry)
            continue
        if baseline := _run_from_state(entry.get("name") or entry["rev"][:7], entry):
            baselines.append(baseline)
        for exp_range in entry.get("experiments") or []:
            state = (exp_range.get("executor") or {}).get("state")
            if state in ("queued", "running", "failed"):
                continue
            for exp in exp_range.get("revs") or []:
                run = _run_from_state(exp.get("name") or exp_range.get("name") or exp["rev"][:7], exp)
                if run:
                    experiments.append(run)
    return baselines, experiments, workspace


def select_runs(shown: list[dict[str, Any]], wanted: list[str]) -> list[Run]:
    """The runs named in ``wanted`` (experiment or branch names, revision prefixes, "workspace");
    with none named, every commit listed and its experiments, leaving out commits with no metrics."""
    baselines, experiments, workspace = runs_from_exp_show(shown)
    if not wanted:
        return [run for run in baselines + experiments if any(run.metrics.values())]
    candidates = baselines + experiments + ([workspace] if workspace else [])
    selected = []
    for name in wanted:
        matches = [run for run in candidates if name == run.name or (len(name) >= 4 and run.rev.startswith(name))]
        if not matches:
            known = ", ".join(run.name for run in candidates) or "none"
            raise RefinelabError(f"no experiment or revision {name!r}; known here: {known}")
        selected.append(matches[0])
    return selected


def differing_params(runs: list[Run]) -> list[str]:
    """Params whose values are not the same in every run, in params.yaml order."""
    keys = list(dict.fromkeys(key for run in runs for key in run.params))
    return [key for key in keys if len({json.dumps(run.params.get(key), sort_keys=True) for run in runs}) > 1]


def _format(value: Any, template: str = "{}") -> str:
    if value is None:
        return ABSENT
    try:
        return template.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    escape = lambda cell: cell.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(escape, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(escape, row)) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(cell)}</{tag}>" for cell in row)  # noqa: E731
    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table>\n<tr>{cells('th', header)}</tr>\n{body}\n</table>"


def comparison_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): experiments as rows, best test accuracy first; the params that differ, then key metrics."""
    params = differing_params(runs)
    metrics = [metric for metric in KEY_METRICS if any(run.metric(metric[1], metric[2]) is not None for run in runs)]
    accuracy = lambda run: run.metric(EVALUATION_METRICS, "test.accuracy")  # noqa: E731
    ordered = sorted(runs, key=lambda run: (accuracy(run) is None, -(accuracy(run) or 0.0)))
    header = ["experiment", "rev", *params, *(metric[0] for metric in metrics)]
    rows = [
        [
            run.name,
            run.rev if run.rev == WORKSPACE else run.rev[:7],
            *(_format(run.params.get(key)) for key in params),
            *(_format(run.metric(path, key), template) for _, path, key, template in metrics),
        ]
        for run in ordered
    ]
    return header, rows


def read_curves(repo: Path, rev: str) -> dict[tuple[str, str], Any]:
    """One revision's dvclive learning curves, keyed by (split, metric), read through DVC's file system
    (git-tracked or DVC-cached alike)."""
    from dvc.api import DVCFileSystem

    from refinelab.plotting import LIVE_METRICS, LIVE_SPLITS, parse_dvclive_tsv

    files = DVCFileSystem(str(repo), rev=None if rev == WORKSPACE else rev)
    curves = {}
    for split, _ in LIVE_SPLITS:
        for metric in LIVE_METRICS:
            path = f"{LIVE_PLOTS_DIR}/{split}/{metric}.tsv"
            try:
                curves[(split, metric)] = parse_dvclive_tsv(files.read_text(path))
            except FileNotFoundError:
                log.warning("%s: no %s", rev, path)
    return curves


def write_learning_curves(repo: Path, runs: list[Run], path: Path) -> None:
    from refinelab.plotting import overlaid_learning_curves, save_figure

    save_figure(overlaid_learning_curves({run.name: read_curves(repo, run.rev) for run in runs}), path)


def image_link(alt: str, image: Path, document: Path) -> str:
    """A Markdown image whose path is relative to the document (what renderers and CML resolve)."""
    return f"![{alt}]({Path(os.path.relpath(image.resolve(), document.resolve().parent)).as_posix()})"


def compare(repo: Path, wanted: list[str], output: Path, all_commits: bool = False) -> str:
    """Write the comparison report to ``output`` and its learning-curve PNG beside it.

    An ``.html`` output is a page with the PNG embedded; any other is Markdown. DVC lists the
    experiments of HEAD; with ``all_commits``, those of every commit.
    """
    shown = json.loads(dvc(["exp", "show", "--json", *(["--all-commits"] if all_commits else [])], repo))
    runs = select_runs(shown, wanted)
    if not runs:
        raise RefinelabError("nothing to compare: no committed results or experiments at HEAD (run `dvc exp run`)")
    figure = output.with_name(f"{output.stem}_learning_curves.png")
    write_learning_curves(repo, runs, figure)
    title = f"Experiments compared ({len(runs)})"
    explanation = ("Sorted by test accuracy. Columns: the params that differ between these runs, then key "
                   f"metrics ({EVALUATION_METRICS}, {TRAINING_METRICS}).")
    curves_alt = "Learning curves of every run: validation solid, train dashed"
    table = comparison_table(runs)
    if output.suffix.lower() in (".html", ".htm"):
        embedded = base64.b64encode(figure.read_bytes()).decode("ascii")
        text = (
            f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n"
            "<style>body{font-family:sans-serif} td,th{border:1px solid #ccc;padding:2px 6px}"
            " table{border-collapse:collapse}</style></head>\n<body>\n"
            f"<h1>{title}</h1>\n<p>{html.escape(explanation)}</p>\n{html_table(*table)}\n"
            f"<h2>Learning curves</h2>\n<img alt=\"{curves_alt}\" src=\"data:image/png;base64,{embedded}\">\n"
            "</body></html>\n"
        )
    else:
        text = "\n\n".join([
            f"# {title}", explanation, markdown_table(*table), "## Learning curves", image_link(curves_alt, figure, output)
        ]) + "\n"
    _write_text(output, text)
    return text


def split_table(table: str, goes_below: str) -> tuple[str, str]:
    """A Markdown table split in two, each with the header: rows containing ``goes_below`` go second."""
    lines = table.splitlines()
    header, rows = lines[:2], lines[2:]
    below = [row for row in rows if goes_below in row]
    above = [row for row in rows if goes_below not in row]
    return "\n".join(header + above) if above else "", "\n".join(header + below) if below else ""


def pull_request_report(repo: Path, base: str, output: Path) -> str:
    """The Markdown a pull request gets: params and metrics diff against ``base`` and the figures."""
    params_diff = dvc(["params", "diff", base, "--md"], repo).strip()
    metrics_diff = dvc(["metrics", "diff", base, "--md"], repo).strip()
    figure = output.with_name(f"{output.stem}_learning_curves.png")
    runs = [Run(name=base, rev=base), Run(name="this change", rev=WORKSPACE)]
    write_learning_curves(repo, runs, figure)
    # Per-class rows (3 per class) would bury the headline metrics: they go in a folded block.
    headline, per_class = split_table(metrics_diff, "per_class.") if metrics_diff else ("", "")
    sections = [
        f"## refinelab: this change against `{base}`",
        "### Params",
        params_diff or f"No params differ from `{base}`.",
        "### Metrics",
    ]
    if not metrics_diff:
        sections.append(f"No metrics differ from `{base}`.")
    if headline:
        sections.append(headline)
    if per_class:
        sections.append(f"<details><summary>Per-class metrics</summary>\n\n{per_class}\n\n</details>")
    sections += [
        "### Learning curves",
        image_link(f"Learning curves, {base} against this change", figure, output),
    ]
    figures = [("Confusion matrix", "confusion_matrix.png"), ("Most confident mistakes", "misclassified.png")]
    present = [(alt, repo / FIGURES_DIR / name) for alt, name in figures if (repo / FIGURES_DIR / name).is_file()]
    if present:
        sections += ["### Test set", "\n".join(image_link(alt, path, output) for alt, path in present)]
    text = "\n\n".join(sections) + "\n"
    _write_text(output, text)
    return text


def _write_text(path: Path, text: str) -> None:
    from refinelab.fileio import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(text)
    log.info("wrote %s", path)

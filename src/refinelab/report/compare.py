"""``refinelab compare`` and ``refinelab report``: experiments side by side, from DVC's own records.

Params and metrics come from ``dvc exp show --json`` (or ``dvc params/metrics diff --md``); learning
curves (dvclive's series) and per-class scores (``metrics/test_details.json``) are read at each
revision through DVC's file system (``dvc.api.DVCFileSystem``): nothing is stored beside what DVC and
git already keep.

Runs are compared within their dataset (the ``dataset`` param, and the files its data came from): one
table, one per-class table and one learning-curve figure per dataset, since scores on different test
sets do not compare.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from refinelab.core.errors import RefinelabError
from refinelab.report.documents import Block, html_page, to_markdown
from refinelab.report.experiments import EVALUATION_METRICS, TIMING_METRICS, WORKSPACE, Run, dvc, select_runs

log = logging.getLogger(__name__)

# Committed evaluate output, not a metric: full-precision scores and the per-class ones.
TEST_DETAILS = "metrics/test_details.json"
DATA_REPORT = "metrics/data.json"  # prepare's report; its source says which files the data came from.
LIVE_PLOTS_DIR = "metrics/train/plots/metrics"
FIGURES_DIR = "metrics/figures"
DATASET_PARAM = "dataset"
# (column, metrics file, key, format); a column no run of a table has is left out.
KEY_METRICS = (
    ("test accuracy", EVALUATION_METRICS, "accuracy", "{:.4f}"),
    ("train-test gap", EVALUATION_METRICS, "gap", "{:+.4f}"),
    ("test loss", EVALUATION_METRICS, "loss", "{:.4f}"),
    ("macro F1", EVALUATION_METRICS, "f1", "{:.4f}"),
    ("top-5 accuracy", EVALUATION_METRICS, "top5", "{:.4f}"),
    ("ECE", EVALUATION_METRICS, "ece", "{:.4f}"),
    ("validation accuracy", EVALUATION_METRICS, "val_acc", "{:.4f}"),
    ("params", EVALUATION_METRICS, "params", "{:,}"),
    ("train seconds", TIMING_METRICS, "train_time", "{:.1f}"),
    # The health check's warnings (refinelab.evaluate.health): 0 when healthy; the codes are in test_details.json.
    ("health warnings", EVALUATION_METRICS, "warnings", "{}"),
)
# (name, key) of the per-class scores in metrics/test_details.json, the first one the headline.
PER_CLASS_SCORES = (("F1", "f1-score"), ("precision", "precision"), ("recall", "recall"))
SCORE_FORMAT = "{:.4f}"
ABSENT = "—"
CURVES_CAPTION = "one colour and marker per run; validation solid with filled markers, train dashed with hollow ones"

PerClass = dict[str, dict[str, float]]  # class name -> {"precision", "recall", "f1-score"}


def data_digests(source: Any) -> str | None:
    """What identifies the files a data report's source describes: its checksums (``sha256``,
    ``sha256_of_files``) wherever they are in it, not where the files lay; None when it has none."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("sha256", "sha256_of_files") and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(source)
    return ",".join(sorted(found)) or None


def group_by_dataset(runs: list[Run], sources: dict[str, dict[str, Any] | None] | None = None) -> dict[str | None, list[Run]]:
    """The runs by their dataset, in order of first appearance: the ``dataset`` param (None: runs without
    one) and, where runs of one such param read different files (two image folders, or one whose files
    changed; ``sources``: each revision's ``metrics/data.json`` source, compared by its checksums), where
    they came from, so that scores on different test sets are never ranked together. A run whose files
    are unknown (no report, or no checksums in it) joins its dataset's runs when they all read the same."""
    sources = sources or {}
    names = {run.rev: None if run.params.get(DATASET_PARAM) is None else str(run.params[DATASET_PARAM]) for run in runs}
    digests = {run.rev: data_digests(sources.get(run.rev)) for run in runs}
    known: dict[str | None, set[str]] = {}
    for run in runs:
        if digests[run.rev] is not None:
            known.setdefault(names[run.rev], set()).add(digests[run.rev])

    locations = {run.rev: (sources.get(run.rev) or {}).get("location") for run in runs}

    def label(run: Run) -> str | None:
        name, digest, where = names[run.rev], digests[run.rev], locations[run.rev]
        if name is None or len(known.get(name, ())) < 2:
            return name
        if digest is None:
            return f"{name}: files unknown (no data report)"
        other_files_here = {digests[other.rev] for other in runs if names[other.rev] == name
                            and locations[other.rev] == where and digests[other.rev] is not None} - {digest}
        if where is None or other_files_here:
            where = f"{where + ' ' if where else ''}(data {hashlib.sha256(digest.encode()).hexdigest()[:8]})"
        return f"{name}: {where}"

    groups: dict[str | None, list[Run]] = {}
    for run in runs:
        groups.setdefault(label(run), []).append(run)
    return groups


def read_data_source(repo: Path, rev: str) -> dict[str, Any] | None:
    """Where a revision's data came from (``metrics/data.json``'s source: location, checksums); None for a
    revision without a data report."""
    from dvc.exceptions import DvcException

    try:
        report = json.loads(_revision_files(repo, rev).read_text(DATA_REPORT))
    except (FileNotFoundError, DvcException, OSError, ValueError):
        return None
    source = report.get("source") if isinstance(report, dict) else None
    return source if isinstance(source, dict) else None


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 'es' if noun.endswith('s') else 's'}"


def group_title(dataset: str | None, runs: list[Run]) -> str:
    count = counted(len(runs), "run")
    return f"{dataset} ({count})" if dataset is not None else f"No `{DATASET_PARAM}` param ({count})"


def file_slugs(datasets: list[str | None]) -> dict[str | None, str]:
    """A distinct file-name part for each dataset group (letters, digits, ``._-``)."""
    slugs: dict[str | None, str] = {}
    for dataset in datasets:
        base = "no_dataset" if dataset is None else re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("._") or "dataset"
        slug, number = base, 2
        while slug in slugs.values():
            slug, number = f"{base}_{number}", number + 1
        slugs[dataset] = slug
    return slugs


def differing_params(runs: list[Run]) -> list[str]:
    """Params whose values are not the same in every run, in params.yaml order."""
    keys = list(dict.fromkeys(key for run in runs for key in run.params))
    return [key for key in keys if len({json.dumps(run.params.get(key), sort_keys=True) for run in runs}) > 1]


def by_test_accuracy(runs: list[Run]) -> list[Run]:
    """Best test accuracy first; runs without one last, in their order."""
    accuracy = lambda run: run.metric(EVALUATION_METRICS, "accuracy")  # noqa: E731
    return sorted(runs, key=lambda run: (accuracy(run) is None, -(accuracy(run) or 0.0)))


def _format(value: Any, template: str = "{}") -> str:
    if value is None:
        return ABSENT
    try:
        return template.format(value)
    except (ValueError, TypeError):
        return str(value)


def comparison_table(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): runs as rows, best test accuracy first; the params that differ between them,
    then the key metrics some run has."""
    params = differing_params(runs)
    metrics = [metric for metric in KEY_METRICS if any(run.metric(metric[1], metric[2]) is not None for run in runs)]
    header = ["experiment", "rev", *params, *(metric[0] for metric in metrics)]
    rows = [
        [
            run.name,
            run.short_rev,
            *(_format(run.params.get(key)) for key in params),
            *(_format(run.metric(path, key), template) for _, path, key, template in metrics),
        ]
        for run in by_test_accuracy(runs)
    ]
    return header, rows


def _revision_files(repo: Path, rev: str):
    from dvc.api import DVCFileSystem

    return DVCFileSystem(str(repo), rev=None if rev == WORKSPACE else rev)


def read_curves(repo: Path, rev: str) -> dict[tuple[str, str], Any]:
    """One revision's dvclive learning curves, keyed by (split, metric), read through DVC's file system
    (git-tracked or DVC-cached alike); a missing one is left out with a warning."""
    from dvc.exceptions import DvcException

    from refinelab.plot.stage import LIVE_METRICS, LIVE_SPLITS, parse_dvclive_tsv

    curves = {}
    try:
        files = _revision_files(repo, rev)
        for split, _ in LIVE_SPLITS:
            for metric in LIVE_METRICS:
                path = f"{LIVE_PLOTS_DIR}/{split}/{metric}.tsv"
                try:
                    curves[(split, metric)] = parse_dvclive_tsv(files.read_text(path))
                except FileNotFoundError:
                    log.warning("%s: no %s", rev, path)
    except DvcException as exc:
        log.warning("%s: no learning curves (%s)", rev, exc)
    return curves


def read_per_class(repo: Path, rev: str, name: str | None = None) -> PerClass | None:
    """One revision's per-class test scores from metrics/test_details.json, read through DVC's file
    system; None, with a warning, when it has none (no file, unreadable, or no per-class entry)."""
    from dvc.exceptions import DvcException

    label = rev if name is None or name == rev else f"{name} ({rev[:7] if rev != WORKSPACE else rev})"
    try:
        details = json.loads(_revision_files(repo, rev).read_text(TEST_DETAILS))
    except FileNotFoundError:
        log.warning("%s: no %s, so no per-class scores", label, TEST_DETAILS)
        return None
    except (DvcException, OSError, ValueError) as exc:
        log.warning("%s: cannot read %s (%s), so no per-class scores", label, TEST_DETAILS, exc)
        return None
    per_class = (details.get("test") or {}).get("per_class") if isinstance(details, dict) else None
    if not isinstance(per_class, dict):
        log.warning("%s: %s has no test.per_class scores", label, TEST_DETAILS)
        return None
    return {str(class_name): scores for class_name, scores in per_class.items() if isinstance(scores, dict)}


def _score(per_class: PerClass | None, class_name: str, key: str) -> float | None:
    value = ((per_class or {}).get(class_name) or {}).get(key)
    return value if isinstance(value, (int, float)) else None


def _classes(per_class: list[PerClass | None]) -> list[str]:
    return list(dict.fromkeys(name for scores in per_class if scores for name in scores))


def per_class_table(
    runs: list[Run], per_class: list[PerClass | None], key: str = "f1-score"
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): classes as rows, runs as columns (``per_class[i]`` is ``runs[i]``'s scores), one
    score (``key``); a run without scores, or without that class, shows ABSENT."""
    header = ["class", *(run.name for run in runs)]
    rows = [
        [name, *(_format(_score(scores, name, key), SCORE_FORMAT) for scores in per_class)]
        for name in _classes(per_class)
    ]
    return header, rows


def per_class_change_table(base: PerClass | None, this: PerClass | None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): each class's scores, base -> this change (difference)."""

    def cell(name: str, key: str) -> str:
        before, after = _score(base, name, key), _score(this, name, key)
        text = f"{_format(before, SCORE_FORMAT)} → {_format(after, SCORE_FORMAT)}"
        return text if before is None or after is None else f"{text} ({after - before:+.4f})"

    header = ["class", *(label for label, _ in PER_CLASS_SCORES)]
    return header, [[name, *(cell(name, key) for _, key in PER_CLASS_SCORES)] for name in _classes([base, this])]


def write_learning_curves(repo: Path, runs: list[Run], path: Path) -> None:
    from refinelab.core.figures import save_figure
    from refinelab.plot.stage import overlaid_learning_curves

    save_figure(overlaid_learning_curves({run.name: read_curves(repo, run.rev) for run in runs}), path)


def per_class_blocks(runs: list[Run], per_class: list[PerClass | None]) -> list[Block]:
    """The folded per-class tables of one group (nothing to fold when no run has scores)."""
    missing = [run.name for run, scores in zip(runs, per_class) if scores is None]
    if len(missing) == len(runs):
        return [("text", f"No per-class scores: no run here has `{TEST_DETAILS}`.")]
    inner: list[Block] = []
    for label, key in PER_CLASS_SCORES:
        inner += [("heading", 4, label[0].upper() + label[1:]), ("table", *per_class_table(runs, per_class, key))]
    if missing:
        inner.append(("text", f"{ABSENT}: no `{TEST_DETAILS}` for {', '.join(missing)}."))
    classes = counted(len(_classes(per_class)), "class")
    summary = f"Per-class scores, test set ({classes}): {', '.join(label for label, _ in PER_CLASS_SCORES)}"
    return [("details", summary, inner)]


def compare(repo: Path, wanted: list[str], output: Path, all_commits: bool = False) -> str:
    """Write the comparison report to ``output`` and, beside it, one learning-curve PNG per dataset
    (``<output stem>_learning_curves_<dataset>.png``).

    An ``.html`` output is a page with the PNGs embedded; any other is Markdown. DVC lists the
    experiments of HEAD; with ``all_commits``, those of every commit.
    """
    shown = json.loads(dvc(["exp", "show", "--json", *(["--all-commits"] if all_commits else [])], repo))
    runs = select_runs(shown, wanted)
    if not runs:
        raise RefinelabError("nothing to compare: no committed results or experiments at HEAD (run `dvc exp run`)")
    groups = group_by_dataset(runs, {run.rev: read_data_source(repo, run.rev) for run in runs})
    slugs = file_slugs(list(groups))
    title = f"Experiments compared: {counted(len(runs), 'run')}, {counted(len(groups), 'dataset')}"
    blocks: list[Block] = [
        ("heading", 1, title),
        ("text", f"One section per dataset (the `{DATASET_PARAM}` param; runs of one that read different files, "
                 f"by `{DATA_REPORT}`, apart): a table of the params that differ "
                 f"between its runs and their key metrics (`{EVALUATION_METRICS}`, `{TIMING_METRICS}`), best "
                 f"test accuracy first; per-class scores (`{TEST_DETAILS}`), folded; the runs' learning curves "
                 f"overlaid ({CURVES_CAPTION})."),
    ]
    for dataset, members in groups.items():
        ordered = by_test_accuracy(members)
        figure = output.with_name(f"{output.stem}_learning_curves_{slugs[dataset]}.png")
        write_learning_curves(repo, ordered, figure)
        per_class = [read_per_class(repo, run.rev, run.name) for run in ordered]
        named = dataset if dataset is not None else f"no-{DATASET_PARAM}"
        blocks += [
            ("heading", 2, group_title(dataset, members)),
            ("table", *comparison_table(ordered)),
            *per_class_blocks(ordered, per_class),
            ("heading", 3, "Learning curves"),
            ("image", f"Learning curves of the {named} runs: {CURVES_CAPTION}", figure),
        ]
    html_output = output.suffix.lower() in (".html", ".htm")
    text = html_page(title, blocks) if html_output else to_markdown(blocks, output)
    _write_text(output, text)
    return text


def rows_or_nothing(markdown_table: str) -> str:
    """A ``dvc ... diff --md`` table, or "" when it has no row (DVC prints the header even then)."""
    lines = [line for line in markdown_table.strip().splitlines() if line.strip()]
    return "\n".join(lines) if len(lines) > 2 else ""


def pull_request_report(repo: Path, base: str, output: Path) -> str:
    """The Markdown a pull request gets: params and metrics diff against ``base``, per-class scores
    (folded), learning curves and the test-set figures."""
    params_diff = rows_or_nothing(dvc(["params", "diff", base, "--md"], repo))
    metrics_diff = rows_or_nothing(dvc(["metrics", "diff", base, "--md"], repo))
    figure = output.with_name(f"{output.stem}_learning_curves.png")
    runs = [Run(name=base, rev=base), Run(name="this change", rev=WORKSPACE)]
    write_learning_curves(repo, runs, figure)
    base_scores, these_scores = read_per_class(repo, base), read_per_class(repo, WORKSPACE)
    blocks: list[Block] = [
        ("heading", 2, f"refinelab: this change against `{base}`"),
        ("heading", 3, "Params"),
        ("text", params_diff or f"No params differ from `{base}`."),
        ("heading", 3, "Metrics"),
        ("text", metrics_diff or f"No metrics differ from `{base}`."),
    ]
    if base_scores is None and these_scores is None:
        blocks.append(("text", f"No per-class scores: neither side has `{TEST_DETAILS}`."))
    else:
        header, rows = per_class_change_table(base_scores, these_scores)
        pairs = [(_score(base_scores, row[0], "f1-score"), _score(these_scores, row[0], "f1-score")) for row in rows]
        changes = [after - before for before, after in pairs if before is not None and after is not None]
        summary = f"Per-class scores, test set ({counted(len(rows), 'class')}), {base} → this change"
        if changes:
            summary += (f": F1 up for {sum(change > 0 for change in changes)}, "
                        f"down for {sum(change < 0 for change in changes)}")
        inner: list[Block] = [("table", header, rows)]
        for side, scores in ((f"`{base}`", base_scores), ("this change", these_scores)):
            if scores is None:
                inner.append(("text", f"{ABSENT}: no `{TEST_DETAILS}` for {side}."))
        blocks.append(("details", summary, inner))
    blocks += [
        ("heading", 3, "Learning curves"),
        ("image", f"Learning curves, {base} against this change: {CURVES_CAPTION}", figure),
    ]
    figures = [("Confusion matrix", "confusion_matrix.png"), ("Most confident mistakes", "misclassified.png")]
    present = [(alt, repo / FIGURES_DIR / name) for alt, name in figures if (repo / FIGURES_DIR / name).is_file()]
    if present:
        blocks += [("heading", 3, "Test set"), *(("image", alt, path) for alt, path in present)]
    text = to_markdown(blocks, output)
    _write_text(output, text)
    return text


def _write_text(path: Path, text: str) -> None:
    from refinelab.core.fileio import atomic_path

    with atomic_path(path) as temporary:
        temporary.write_text(text)
    log.info("wrote %s", path)

"""`make bench`: refinelab against a bare-Keras peer, side by side, in one run on one machine.

Wall times differ ~2.5x between machines of this project, so the table leads with ratios to the peer
measured in the same run; absolute figures follow, with the machine named. Entries:

- ``keras_peer``: bare Keras, no refinelab code: the default run's architecture (cloned from its saved
  model, fresh weights), its prepared arrays loaded into memory, ``tf.data`` from them, ``model.fit``
  with the same batch size, epochs, optimizer and schedule, then ``model.evaluate`` on the test split.
- ``refinelab_default``: ``dvc repro`` of the committed params.yaml in a fresh copy of the project.
- ``tutorial_cnn``: the seed tutorial CNN (``-S model=cnn -S epochs=15``), a ``dvc exp run`` in the same copy.
- ``best_preset``: the strongest preset measured so far (``BEST_PRESET``, past 94.5% on a GPU;
  ``BEST_CPU_PRESET`` on a machine without one; ``--preset`` tries others), also a ``dvc exp run``.

``--backend jax`` runs every entry on Keras' JAX backend (``-S backend=jax``; the peer is fed numpy
arrays, Keras' own path there), and needs no TensorFlow: what a GPU machine with JAX runs.

On JAX every entry starts with an empty compilation cache of its own (refinelab.core.backend keeps compiled
programs between processes): its figures are those of a first run, which compiles everything.

Every stage's wall time and peak RSS are taken by a stand-in ``python`` on the PATH that the stage
commands of dvc.yaml run through. Results go to ``benchmarks/results/<time>.json`` and the table to
BENCHMARKS.md. ``--quick`` (scikit-learn's digits, 1 epoch, the default and the peer only: under a
minute) checks that this script works and writes only under ``--out``; ``make test`` runs it.

    python benchmarks/bench.py             # the full benchmark (Fashion-MNIST; about an hour on 2 cores)
    python benchmarks/bench.py --quick --out /tmp/bench
    python benchmarks/bench.py --backend jax   # e.g. on a GPU machine: its table gets a section of its own
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRIES = ("keras_peer", "refinelab_default", "tutorial_cnn", "best_preset")
TUTORIAL_CNN = ["model=cnn", "epochs=15"]
# The strongest preset on Fashion-MNIST, with its schedule and augmentation (see BENCHMARKS.md): past
# 94.5% on an H100 in a 3-4 minute `dvc exp run`. On a CPU its 30 epochs take many hours, so a machine
# without a GPU runs the strongest preset that fits a CPU's budget instead.
BEST_PRESET = ["model=resnet_wide", "epochs=30", "augment.mode=online", "augment.online=[flip_horizontal,shift,cutout]",
               "train.label_smoothing=0.1", "train.optimizer=sgd", "learning_rate=0.05", "l2=0.00025"]
BEST_CPU_PRESET = ["model=resnet_small", "epochs=8", "train.label_smoothing=0.1"]
# --quick: the offline digits set (made 28x28, as the tutorial CNN's valid convolutions need) and one epoch.
QUICK = ["dataset=digits", "data.image_size=[28,28]", "epochs=1"]

# The stand-in `python` that stage commands run through: the real one as a child, then one JSON line
# with the stage's wall time and the peak RSS of its process tree.
STAGE_PROBE = textwrap.dedent("""\
    #!{python}
    import json, os, resource, subprocess, sys, time
    started = time.perf_counter()
    status = subprocess.call([{python!r}, *sys.argv[1:]])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with open(os.environ["REFINELAB_BENCH_LOG"], "a") as log:
        log.write(json.dumps({{"argv": sys.argv[1:], "seconds": seconds, "peak_rss_mb": peak_mb}}) + "\\n")
    sys.exit(status)
""")


def installed(*names: str) -> str | None:
    """The version of the first of ``names`` installed (importing nothing), or None."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def machine(backend: str = "tensorflow") -> dict[str, str | int | None]:
    """What the figures were measured on (without importing a backend: TensorFlow may be absent)."""
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=60)
        # Without a driver or a device nvidia-smi fails, printing why: that is no GPU's name.
        gpus = listed.stdout.split("\n") if listed.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        gpus = []
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": installed("tensorflow", "tensorflow-cpu"), "jax": installed("jax"),
            "keras": installed("keras"), "backend": backend,
            "gpu": ", ".join(name.strip() for name in gpus if name.strip()) or None}


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``command``; its output (stdout, then stderr)."""
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def project_copy(destination: Path) -> Path:
    """The project's committed files and params in a fresh git + DVC repository."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        source = ROOT / name
        if source.is_file() and not name.startswith(("metrics/", "benchmarks/results/")) and name != "dvc.lock":
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    run(["git", "init", "-q"], destination)
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "add", "-A"], destination)
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench"], destination)
    if not (destination / ".dvc").is_dir():
        run([sys.executable, "-m", "dvc", "init", "-q"], destination)
    return destination


def exp_run(*assignment_lists: list[str]) -> list[str]:
    """`exp run` with the assignments as -S options, a later list's value of a key winning."""
    assignments = {}
    for assignment in (item for items in assignment_lists for item in items):
        key, value = assignment.split("=", 1)
        assignments[key] = value
    return ["exp", "run", *(option for key, value in assignments.items() for option in ("-S", f"{key}={value}"))]


def pipeline_run(project: Path, command: list[str], log: Path) -> dict:
    """Run ``command`` (dvc repro / dvc exp run) in ``project``; its stages' times and peak RSS and its
    results."""
    probe_dir = project.parent / "probe-bin"
    probe_dir.mkdir(exist_ok=True)
    probe = probe_dir / "python"
    probe.write_text(STAGE_PROBE.format(python=sys.executable))
    probe.chmod(0o755)
    log.unlink(missing_ok=True)
    # `exp run` leaves its -S values in params.yaml: every entry starts from the committed params.
    run(["git", "checkout", "--", "params.yaml"], project)
    # The project's own src first, then whatever the caller's PYTHONPATH holds (e.g. carried packages).
    python_path = os.pathsep.join(filter(None, [str(project / "src"), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PATH=f"{probe_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=python_path, REFINELAB_BENCH_LOG=str(log), TF_CPP_MIN_LOG_LEVEL="2",
               REFINELAB_JAX_CACHE=tempfile.mkdtemp(prefix="jax-cache-", dir=project.parent))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # It would win over REFINELAB_JAX_CACHE.
    started = time.perf_counter()
    output = run([sys.executable, "-m", "dvc", *command], project, env)
    wall = time.perf_counter() - started
    # The train stage's log line (refinelab.train.stage.TrainingTimer); none when DVC skipped the stage.
    epoch_lines = re.findall(r"([0-9.]+) s per epoch after the first", output)
    stages = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        stages[Path(record["argv"][0]).stem] = {"seconds": round(record["seconds"], 1),
                                               "peak_rss_mb": round(record["peak_rss_mb"])}
    evaluation = json.loads((project / "metrics/evaluate.json").read_text())
    resolved = json.loads((project / "models/params.json").read_text())
    train_seconds = json.loads((project / "metrics/timing.json").read_text())["train_time"]
    epochs_run = len((project / "metrics/train/plots/metrics/train/loss.tsv").read_text().splitlines()) - 1
    return {
        "command": "dvc " + " ".join(command),
        "wall_seconds": round(wall, 1),
        "train_seconds": train_seconds,
        "train_images_per_second": round(resolved["training"]["train_images"] * epochs_run / train_seconds, 1),
        "epoch_seconds": float(epoch_lines[-1]) if epoch_lines else None,
        "epochs": epochs_run,
        "batch_size": resolved["batch_size"],
        "test_accuracy": evaluation["accuracy"],
        "peak_rss_mb": max(stage["peak_rss_mb"] for stage in stages.values()),
        "stages": stages,
    }


def keras_peer(project: Path) -> dict:
    """Bare Keras on the default run's data and architecture (run in its own process by main, with
    KERAS_BACKEND set): ``tf.data`` from the arrays on TensorFlow, the arrays themselves on other backends."""
    started = time.perf_counter()
    import keras
    import numpy as np

    resolved = json.loads((project / "models/params.json").read_text())
    prepared = project / "data/prepared"
    arrays = {split: (np.load(prepared / f"{split}_images.npy"), np.load(prepared / f"{split}_labels.npy"))
              for split in ("train", "validation", "test")}
    keras.utils.set_random_seed(resolved["seed"])
    model = keras.models.clone_model(keras.models.load_model(project / "models/model.keras", compile=False))
    batch_size, epochs = resolved["batch_size"], resolved["epochs"]

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        def batches(split: str, shuffle: bool) -> tf.data.Dataset:
            images, labels = arrays[split]
            dataset = tf.data.Dataset.from_tensor_slices((images, labels))
            if shuffle:
                dataset = dataset.shuffle(len(labels), seed=resolved["seed"], reshuffle_each_iteration=True)
            return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)

        train, validation, test = {"x": batches("train", True)}, batches("validation", False), {"x": batches("test", False)}
    else:
        def floats(split: str) -> tuple:
            return arrays[split][0].astype("float32"), arrays[split][1]

        train = dict(zip("xy", floats("train")), batch_size=batch_size, shuffle=True)
        validation, test = floats("validation"), dict(zip("xy", floats("test")), batch_size=batch_size)

    steps = -(-len(arrays["train"][1]) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(resolved["learning_rate"], decay_steps=steps * epochs)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    epoch_ends = []
    fit_started = time.perf_counter()
    model.fit(**train, validation_data=validation, epochs=epochs, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: epoch_ends.append(time.perf_counter()))])
    train_seconds = time.perf_counter() - fit_started
    # As refinelab's train log line: the median epoch after the first (which compiles), validation included.
    epoch_seconds = float(np.median(np.diff(epoch_ends))) if len(epoch_ends) > 1 else train_seconds
    _, accuracy = model.evaluate(**test, verbose=0)
    import resource

    feed = "tf.data from memory" if keras.backend.backend() == "tensorflow" else "numpy arrays"
    return {
        "command": f"keras ({keras.backend.backend()}): clone_model + {feed} + model.fit",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train_seconds": round(train_seconds, 1),
        "train_images_per_second": round(len(arrays["train"][1]) * epochs / train_seconds, 1),
        "epoch_seconds": round(epoch_seconds, 2),
        "epochs": epochs,
        "batch_size": batch_size,
        "test_accuracy": round(float(accuracy), 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def with_ratios(results: dict[str, dict]) -> dict[str, dict]:
    peer = results["keras_peer"]
    for entry in results.values():
        entry["wall_vs_peer"] = round(entry["wall_seconds"] / peer["wall_seconds"], 2)
        entry["train_speed_vs_peer"] = round(entry["train_images_per_second"] / peer["train_images_per_second"], 3)
    return results


def table(report: dict) -> str:
    lines = [
        "| entry | wall time ÷ peer's | training images/s ÷ peer's | test accuracy | wall s | train s | "
        "s per epoch | training images/s | epochs | batch | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["results"].items():
        # None: train was skipped; absent: measured before 2026-11-24.
        epoch_seconds = "n/a" if entry.get("epoch_seconds") is None else f"{entry['epoch_seconds']:.2f}"
        lines.append(
            f"| {name} | {entry['wall_vs_peer']:.2f} | {entry['train_speed_vs_peer']:.3f} | "
            f"{entry['test_accuracy']:.4f} | {entry['wall_seconds']:.0f} | {entry['train_seconds']:.0f} | "
            f"{epoch_seconds} | {entry['train_images_per_second']:.0f} | {entry['epochs']} | {entry['batch_size']} | "
            f"{entry['peak_rss_mb']} |"
        )
    stages = report["results"]["refinelab_default"]["stages"]
    lines += ["", "refinelab_default per stage (wall s / peak RSS MB): "
              + ", ".join(f"{name} {s['seconds']:.0f} / {s['peak_rss_mb']}" for name, s in stages.items())]
    found = report["machine"]
    versions = ", ".join(f"{name} {found[key]}" for name, key in (("TensorFlow", "tensorflow"), ("JAX", "jax"))
                         if found.get(key))
    lines += ["", f"Machine: {found['cpu']}, {found['cores']} cores, GPU: {found['gpu'] or 'none'}; Python "
              f"{found['python']}, {versions or 'no TensorFlow, no JAX'}, Keras {found['keras']} ({found['backend']} "
              f"backend). {report['mode']} run of {report['date']}."]
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, report: dict) -> None:
    """Replace the generated table in ``path`` (between its markers), keeping the text around it. A run
    on a GPU has markers of its own: it adds its table (at the end the first time) and leaves the CPU's."""
    section = "bench:gpu" if report["machine"]["gpu"] else "bench"
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start not in text:
        text = f"{text.rstrip()}\n\n{start}\n{end}\n"
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    path.write_text(f"{before}{start}\n{table(report)}{end}{after}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="digits, 1 epoch: checks the script in seconds")
    parser.add_argument("--out", type=Path, help="where results and the table go (default: benchmarks/results "
                        "and BENCHMARKS.md; with --quick, a temporary folder)")
    parser.add_argument("--entries", nargs="*", choices=ENTRIES[2:], help="which of the presets to run besides "
                        "the default and the peer (default: all of them, none with --quick; --entries alone: none)")
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="tensorflow",
                        help="Keras' backend for every entry (jax: no TensorFlow needed)")
    parser.add_argument("--preset", nargs="+", action="append", metavar="KEY=VALUE",
                        help=f"the best_preset entry's -S assignments (default, with a GPU: {' '.join(BEST_PRESET)}; "
                        f"without: {' '.join(BEST_CPU_PRESET)}); given again, candidates side by side: best_preset_2, ...")
    parser.add_argument("--peer-of", type=Path, help=argparse.SUPPRESS)  # Internal: the peer's own process.
    args = parser.parse_args()
    for assignment in (item for items in args.preset or [] for item in items):
        if "=" not in assignment:
            parser.error(f"--preset: expected KEY=VALUE (a dvc exp run -S assignment), got {assignment!r}")
    os.environ["KERAS_BACKEND"] = args.backend  # For the peer, which imports Keras.
    if args.peer_of:
        print(json.dumps(keras_peer(args.peer_of)))
        return

    overrides = (QUICK if args.quick else []) + ([f"backend={args.backend}"] if args.backend != "tensorflow" else [])
    presets = args.entries if args.entries is not None else ([] if args.quick else list(ENTRIES[2:]))
    out = args.out or (Path(tempfile.mkdtemp(prefix="refinelab-bench-")) if args.quick else None)
    found = machine(args.backend)
    with tempfile.TemporaryDirectory(prefix="refinelab-bench-") as scratch:
        project = project_copy(Path(scratch) / "project")
        log = Path(scratch) / "stages.jsonl"
        results = {}
        # The default run first: the peer trains on its prepared arrays and its architecture.
        results["refinelab_default"] = pipeline_run(project, exp_run(overrides) if overrides else ["repro"], log)
        print(f"refinelab_default: {json.dumps(results['refinelab_default'])}", flush=True)
        # Without the user's JAX compilation cache, if any: it compiles from scratch, as the entries do.
        peer_env = {key: value for key, value in os.environ.items() if key != "JAX_COMPILATION_CACHE_DIR"}
        peer = subprocess.run([sys.executable, __file__, "--backend", args.backend, "--peer-of", str(project)],
                              capture_output=True, text=True, env=dict(peer_env, TF_CPP_MIN_LOG_LEVEL="2"))
        if peer.returncode != 0:
            raise RuntimeError(f"the Keras peer failed:\n{peer.stderr[-3000:]}")
        results["keras_peer"] = json.loads(peer.stdout.strip().splitlines()[-1])
        print(f"keras_peer: {json.dumps(results['keras_peer'])}", flush=True)
        default_preset = BEST_PRESET if found["gpu"] else BEST_CPU_PRESET
        candidates = [("best_preset" + (f"_{number}" if number > 1 else ""), changes)
                      for number, changes in enumerate(args.preset or [default_preset], start=1)]
        for name, changes in [("tutorial_cnn", TUTORIAL_CNN), *candidates]:
            if name.rstrip("_0123456789") in presets:
                results[name] = pipeline_run(project, exp_run(changes, overrides), log)
                print(f"{name}: {json.dumps(results[name])}", flush=True)
    report = {"mode": "quick" if args.quick else "full", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": found, "results": with_ratios(results)}
    results_dir = out or ROOT / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{report['date'].replace(':', '')}-{report['mode']}.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown((out / "BENCHMARKS.md") if out else ROOT / "BENCHMARKS.md", report)
    print(table(report))


if __name__ == "__main__":
    main()

"""The defaults on small datasets: the transfer presets, the default CNN and the tutorial models, one table.

Every run is the real pipeline: the stage scripts with the project's params.yaml, only the dataset (and
the model) changed, in a scratch folder each. It prints test accuracy, the health check's verdict and wall
time (every stage, Python start-up and imports included).

    python benchmarks/small_data.py                                # every dataset found
    python benchmarks/small_data.py --datasets digits fmnist-500   # some of them
    python benchmarks/small_data.py --models cnn_bn --output results.json
    python benchmarks/small_data.py --datasets hymenoptera --models efficientnet_lite0 --set 'data.image_size=[224,224]'

Datasets: Fashion-MNIST capped at 500 / 2,000 / 10,000 images per split, scikit-learn's digits, and
from ``../shared/datasets`` (``--shared``): chihuahua-muffin and hymenoptera at 64x64 RGB, and the
SIGNS test file split three ways. Those missing are skipped with a note. Wall times depend on the
machine: compare rows of one run, not figures across machines.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from refinelab.params.files import read_config, write_config

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("check_params", "prepare", "augment", "features", "train", "evaluate", "plot")
# Transfer from ImageNet (frozen; fine-tuned), the CNN `model: auto` picks for the built-in sets, and the
# tutorials' models: the Fashion-MNIST tutorial CNN and the baseline MLP.
MODELS = ("efficientnet_lite0", "efficientnet_lite0_finetune", "cnn_bn", "cnn", "baseline")
PHOTOS_64 = {"data": {"image_size": [64, 64], "color_mode": "rgb", "on_bad_image": "skip"}}


def datasets(shared: Path) -> dict[str, dict | str]:
    """name -> params changes, or the reason it is skipped."""
    found: dict[str, dict | str] = {
        f"fmnist-{limit}": {"dataset": "fashion_mnist", "data": {"limit": limit}} for limit in (500, 2000, 10000)
    }
    found["digits"] = {"dataset": "digits"}
    local = {
        "chihuahua-muffin": {"dataset": "filename_labels",
                             "filename_labels": {"path": str(shared / "chihuahua-muffin")}, **PHOTOS_64},
        "hymenoptera": {"dataset": "image_folder", "image_folder": {"path": str(shared / "hymenoptera")}, **PHOTOS_64},
        "signs-test-split": {"dataset": "h5", "h5": {"train": None, "test": str(shared / "signs" / "test_signs.h5")}},
    }
    for name, changes in local.items():
        folder = shared / ("signs" if name.startswith("signs") else name)
        found[name] = changes if folder.exists() else f"skipped: {folder} not found"
    return found


def merged(base: dict, changes: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def stage_command(stage: str) -> list[str]:
    """The stage's command from dvc.yaml, its script taken from this checkout and run by this Python."""
    _, script, *arguments = shlex.split(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"])
    return [sys.executable, str(ROOT / script), *arguments]


def run_pipeline(params: dict, workdir: Path) -> dict:
    """The five stages in ``workdir``; their wall times and the key metrics."""
    write_config(workdir, params)
    seconds = {}
    for stage in STAGES:
        started = time.perf_counter()
        result = subprocess.run(stage_command(stage), cwd=workdir, capture_output=True, text=True)
        seconds[stage] = round(time.perf_counter() - started, 1)
        if result.returncode != 0:
            return {"error": f"{stage}: {result.stderr.strip().splitlines()[-1]}", "seconds": seconds}
    details = json.loads((workdir / "metrics/test_details.json").read_text())
    resolved = json.loads((workdir / "models/params.json").read_text())
    return {
        "test_accuracy": details["test"]["accuracy"],
        "validation_accuracy": details["validation_accuracy"],
        "train_accuracy": details["train_accuracy"],
        "health": ",".join(details["health"]) or "ok",
        "train_images": resolved["training"]["train_images"],
        "batch_size": resolved["batch_size"],
        "epochs": resolved["epochs"],
        "seconds": seconds,
        "wall_seconds": round(sum(seconds.values()), 1),
    }


def machine() -> str:
    """The CPU model and core count, named beside any wall time."""
    model = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--datasets", nargs="+", help="names to run (default: all found)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="params for every run, as `dvc exp run -S` takes them: e.g. epochs=20 "
                        "data.limit=100 'data.image_size=[224,224]' (YAML values; dots for nested keys; they win "
                        "over a dataset's own settings)")
    parser.add_argument("--output", type=Path, help="write every result as JSON here")
    args = parser.parse_args()

    base = read_config(ROOT / "params.yaml")
    overrides: dict = {}  # --set wins over each dataset's own settings (its image size, say).
    for assignment in args.set:
        key, value = assignment.split("=", 1)
        change = yaml.safe_load(value)
        for part in reversed(key.split(".")):
            change = {part: change}
        overrides = merged(overrides, change)
    results = []
    for name, changes in datasets(args.shared).items():
        if args.datasets and name not in args.datasets:
            continue
        if isinstance(changes, str):
            print(f"{name}: {changes}", flush=True)
            continue
        for model in args.models:
            with tempfile.TemporaryDirectory(prefix="refinelab-bench-") as scratch:
                outcome = run_pipeline(merged(merged(base, {**changes, "model": model}), overrides), Path(scratch))
            results.append({"dataset": name, "model": model, **outcome})
            print(json.dumps(results[-1]), flush=True)

    print(f"\n{'dataset':<18} {'model':<28} {'train':>6} {'batch':>5} {'val acc':>7} {'test acc':>8} {'wall s':>7}  health")
    for row in results:
        if "error" in row:
            print(f"{row['dataset']:<18} {row['model']:<28} error: {row['error']}")
            continue
        print(f"{row['dataset']:<18} {row['model']:<28} {row['train_images']:>6} {row['batch_size']:>5} "
              f"{row['validation_accuracy']:>7.3f} {row['test_accuracy']:>8.3f} {row['wall_seconds']:>7.1f}  {row['health']}")
    print(f"\nmachine: {machine()}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

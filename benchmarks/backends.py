"""Keras backends and input pipelines on this machine: the train stage's work (refinelab.train.stage.train)
with the project's params for ``--epochs`` epochs, as TensorFlow + tf.data (the default), TensorFlow +
the PyDataset pipeline, and JAX + the PyDataset pipeline (skipped where JAX is not installed). Each
runs in its own process, since Keras' backend is fixed when Keras is imported. Prints training
images/s and each one's ratio to the default; needs the prepared data (`dvc repro augment` first).

    python benchmarks/backends.py --epochs 2
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, machine  # noqa: E402

VARIANTS = (("tensorflow", "tf.data"), ("tensorflow", "pydataset"), ("jax", "pydataset"))


def measure(backend: str, pipeline: str, epochs: int, out: Path) -> dict:
    """One variant, in this process (Keras not imported yet)."""
    from refinelab.core.backend import select_backend
    from refinelab.params.files import read_config
    from refinelab.params.schema import parse_params

    select_backend(backend)
    import refinelab.data.pipeline
    import refinelab.train.stage

    refinelab.data.pipeline.default_pipeline = lambda: pipeline  # The pipeline under test, whatever the backend.
    raw = read_config(ROOT / "params.yaml")
    raw.update(epochs=epochs, backend=backend)
    refinelab.train.stage.train(parse_params(raw), ROOT / "data/augmented", ROOT / "data/prepared", out / "model.keras",
                             out / "live", out / "timing.json")
    seconds = json.loads((out / "timing.json").read_text())["train_time"]
    images = json.loads((out / "params.json").read_text())["training"]["train_images"]
    return {"backend": backend, "pipeline": pipeline, "epochs": epochs, "train_s": seconds,
            "images_per_s": round(images * epochs / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--variant", nargs=2, help=argparse.SUPPRESS)  # Internal: one variant's own process.
    args = parser.parse_args()
    if args.variant:
        with tempfile.TemporaryDirectory() as scratch:
            print(json.dumps(measure(*args.variant, args.epochs, Path(scratch))))
        return

    results = []
    for backend, pipeline in VARIANTS:
        if backend == "jax" and importlib.util.find_spec("jax") is None:
            print("jax: not installed, skipped", flush=True)
            continue
        run = subprocess.run([sys.executable, __file__, "--epochs", str(args.epochs), "--variant", backend, pipeline],
                             capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if run.returncode != 0:
            raise RuntimeError(f"{backend} + {pipeline} failed:\n{run.stderr[-3000:]}")
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    for result in results:
        result["images_per_s_vs_default"] = round(result["images_per_s"] / results[0]["images_per_s"], 3)
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(), "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{report['date'].replace(':', '')}-backends.json").write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        print(f"{result['backend']:>10} + {result['pipeline']:<9} {result['images_per_s']:>8.1f} images/s "
              f"({result['images_per_s_vs_default']:.3f}x the default)")


if __name__ == "__main__":
    main()

"""Where an epoch's time goes beside the training steps: refinelab's input pipeline and callbacks against
bare Keras, with one and with several steps per call of Keras' step function, interleaved in one process.

``bench.py`` runs the peer and refinelab once each, in separate processes, minutes apart; on the H100
machine the same configuration's epoch varied by 20-30% from one fit to the next, more than the
difference measured. Here every variant trains the default run's architecture (cloned from
``models/model.keras``, fresh weights) on the prepared splits for ``--epochs`` epochs, with the same
optimizer and schedule, and the variants take turns for ``--rounds`` rounds:

- ``peer``: numpy arrays in memory, ``model.fit``, no other callback (bench's keras_peer on JAX);
- ``refinelab``: the memory-mapped splits through refinelab's ``PyDataset`` (:func:`build_dataset`), and
  the callbacks train gives ``fit``: dvclive's metrics and the per-epoch backup (both variants
  carry train's epoch timer, which gives the figure);

each with every value of ``--steps-per-execution`` (refinelab's train uses 8 on JAX, 1 on TensorFlow:
``refinelab.train.stage.steps_per_execution``). The figure is the median epoch after the first
(which compiles), from one epoch's start to the next. Needs the prepared data and a trained model in
the project (``dvc repro train``; ``--project`` another one); results go to
``benchmarks/results/<time>-epoch_overhead.json`` (``--out`` another folder).

    python benchmarks/epoch_overhead.py --rounds 3 --steps-per-execution 1 8
    python benchmarks/epoch_overhead.py --rounds 2 --steps-per-execution 1 8 16 32 --no-peer
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ROOT, machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-execution", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--no-peer", action="store_true", help="refinelab's variants only")
    parser.add_argument("--project", type=Path, default=ROOT, help="its data/prepared and models/ (default: this one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    needed = [args.project / "data/prepared", args.project / "models/model.keras", args.project / "models/params.json"]
    if missing := [str(path) for path in needed if not path.exists()]:
        parser.error(f"missing {', '.join(missing)}: run `dvc repro train` in {args.project} first")

    import keras
    import numpy as np
    from dvclive import Live

    from refinelab.data.pipeline import INFERENCE_BATCH, build_dataset, pipeline_callbacks
    from refinelab.data.store import load_split
    from refinelab.train.resume import TrainingBackup
    from refinelab.train.stage import LiveMetrics, TrainingTimer

    prepared = args.project / "data/prepared"
    train, validation = load_split(prepared, "train"), load_split(prepared, "validation")
    arrays = {name: (np.asarray(split.images, dtype="float32"), np.asarray(split.labels))
              for name, split in (("train", train), ("validation", validation))}
    architecture = keras.models.load_model(args.project / "models/model.keras", compile=False)
    resolved = json.loads((args.project / "models/params.json").read_text())
    batch_size, seed = resolved["batch_size"], resolved["seed"]
    scratch = Path(tempfile.mkdtemp(prefix="epoch-overhead-"))

    def peer_fit() -> tuple[dict, list]:
        return dict(x=arrays["train"][0], y=arrays["train"][1], batch_size=batch_size, shuffle=True,
                    validation_data=arrays["validation"]), []

    def refinelab_fit() -> tuple[dict, list]:
        data = build_dataset(train, batch_size, shuffle=True, seed=seed)
        folder = Path(tempfile.mkdtemp(dir=scratch))
        live = Live(dir=str(folder / "live"), dvcyaml=None, save_dvc_exp=False)
        backup = TrainingBackup(folder / "model.keras", {"fit": str(folder)}, shared_root=folder / "backup")
        callbacks = pipeline_callbacks(data) + [LiveMetrics(live), *backup.callbacks(folder / "live")]
        return dict(x=data, validation_data=build_dataset(validation, INFERENCE_BATCH)), callbacks

    def median_epoch(fit_arguments, per_execution: int) -> float:
        keras.utils.set_random_seed(seed)
        model = keras.models.clone_model(architecture)
        steps = -(-len(train) // batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(resolved["learning_rate"], steps * args.epochs)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], steps_per_execution=per_execution)
        kwargs, callbacks = fit_arguments()
        timer = TrainingTimer()  # Train's own epoch timer (each epoch until the next begins), for both.
        model.fit(**kwargs, epochs=args.epochs, verbose=0, callbacks=[timer, *callbacks])
        return float(np.median(timer.epoch_seconds[1:]))

    variants = [(name, fit, per_execution) for per_execution in args.steps_per_execution
                for name, fit in (("peer", peer_fit), ("refinelab", refinelab_fit))
                if not (name == "peer" and args.no_peer)]
    epochs: dict[str, list[float]] = {f"{name}_spe{per_execution}": [] for name, _, per_execution in variants}
    for round_number in range(args.rounds):
        for name, fit, per_execution in variants:
            seconds = median_epoch(fit, per_execution)
            epochs[f"{name}_spe{per_execution}"].append(round(seconds, 3))
            print(f"round {round_number}: {name}, {per_execution} steps per execution: {seconds:.3f} s per epoch",
                  flush=True)
    # What refinelab does in the training thread per batch that the peer does not: gather it from the
    # memory-mapped split (PyDataset, the JAX pipeline) and make it float32.
    batches = build_dataset(train, batch_size, shuffle=True, seed=seed, pipeline="pydataset")
    started = time.perf_counter()
    for index in range(batches.num_batches):
        batches[index]
    gather_us = (time.perf_counter() - started) / batches.num_batches * 1e6
    summary = {variant: round(float(np.mean(values)), 3) for variant, values in epochs.items()}
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(keras.backend.backend()),
              "epochs": args.epochs, "batch_size": batch_size, "median_epoch_seconds": epochs,
              "mean_of_rounds": summary, "host_microseconds_per_batch": {"refinelab_gather": round(gather_us, 1)}}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"{report['date'].replace(':', '')}-epoch_overhead.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

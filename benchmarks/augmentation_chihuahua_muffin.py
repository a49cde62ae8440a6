"""Chihuahua or muffin: test accuracy with and without the study's offline copies (invert + rotate90).

The study this project grew from enlarged its 26 training images with an inverted and a 90°-rotated
copy of each. This benchmark repeats that with refinelab's own augment stage (``refinelab.augment.ops``)
and the architecture presets from params.yaml, several seeds each (the test set has only 14 images),
and reports test accuracy on the real test images and on the same images turned 90° and inverted
(to show what the copies buy and what they cost).

    PYTHONPATH=src python benchmarks/augmentation_chihuahua_muffin.py ../shared/datasets/chihuahua-muffin

It loads the folder itself (label = file-name prefix, ``full.jpg`` skipped, ``test_set/`` = test).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from refinelab.params.files import read_config
from refinelab.params.schema import parse_params
from refinelab.prepare.images import Preprocessing, load_image

log = logging.getLogger("benchmark")
CLASS_NAMES = ("chihuahua", "muffin")


def load_folder(folder: Path, preprocessing: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """Every ``chihuahua*``/``muffin*`` JPEG directly in ``folder``; anything else (full.jpg) is skipped."""
    images, labels = [], []
    for path in sorted(folder.glob("*.jpg")):
        label = next((index for index, name in enumerate(CLASS_NAMES) if path.name.startswith(name)), None)
        if label is None:
            log.info("skipped %s (no class prefix)", path.name)
            continue
        images.append(load_image(path, preprocessing))
        labels.append(label)
    return np.stack(images), np.array(labels, dtype=np.int64)


def run_once(
    raw_params: dict, train_dir: Path, prepared_dir: Path, test_sets: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict:
    """Train the preset on the training set augment wrote to ``train_dir`` with refinelab's seeding;
    accuracy on each test set."""
    import keras

    from refinelab.data.pipeline import build_dataset
    from refinelab.data.store import Split, load_training_set
    from refinelab.models.builders import Regularization, build_model
    from refinelab.train.batch_norm import recalibrate
    from refinelab.train.stage import resolve_batch_size, seed_everything

    params = parse_params(raw_params)
    seed_everything(params.seed)
    train = load_training_set(train_dir, prepared_dir)
    batch_size = resolve_batch_size(params.batch_size, len(train))
    model = build_model(
        params.architecture, train.images.shape[1:], len(CLASS_NAMES),
        Regularization(dropout=params.dropout, l2=params.l2), name=params.preset,
    )
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    model.fit(build_dataset(train, batch_size, shuffle=True, seed=params.seed), epochs=params.epochs,
              shuffle=False, verbose=0)
    recalibrate(model, train, params.seed)  # As the train stage does: batch-norm statistics for inference.
    return {
        name: float(model.evaluate(build_dataset(Split(images, labels), batch_size), verbose=0)[1])
        for name, (images, labels) in test_sets.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", type=Path, help="the chihuahua-muffin folder")
    parser.add_argument("--params", default="params.yaml", help="params.yaml to take presets and defaults from")
    parser.add_argument("--models", nargs="+", default=["baseline", "cnn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=100, help="the study trained 100 epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="images are made size x size")
    parser.add_argument("--color-mode", choices=["grayscale", "rgb"], default="grayscale",
                        help="the study used grayscale")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    parser.add_argument("--figures", type=Path, help="keep the augment stage's sample grids here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from refinelab.augment.ops import invert, rotate90
    from refinelab.augment.stage import augment
    from refinelab.data.store import save_meta, save_split

    preprocessing = Preprocessing((args.size, args.size), args.color_mode, "crop")
    train_images, train_labels = load_folder(args.dataset_dir, preprocessing)
    test_images, test_labels = load_folder(args.dataset_dir / "test_set", preprocessing)
    log.info("train %s per class, test %s per class", np.bincount(train_labels), np.bincount(test_labels))
    # The same test images turned and inverted, through the same ops as the copies (exact transforms).
    test_sets = {
        "test": (test_images, test_labels),
        "test_rotated90": (np.asarray(rotate90(test_images)).astype(np.uint8), test_labels),
        "test_inverted": (np.asarray(invert(test_images.astype(np.float32))).astype(np.uint8), test_labels),
    }

    base = read_config(args.params)
    base.update(epochs=args.epochs, batch_size=args.batch_size)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared"
        prepared.mkdir()
        save_split(prepared, "train", train_images, train_labels)
        save_meta(prepared, {"class_names": list(CLASS_NAMES)})
        for model in args.models:
            for mode in ("none", "offline"):
                for seed in args.seeds:
                    raw = copy.deepcopy(base)
                    raw.update(model=model, seed=seed)
                    raw["augment"].update(mode=mode, offline=["invert", "rotate90"], copies=1)
                    augmented = Path(scratch) / f"augmented-{mode}-{seed}"
                    summary = augment(parse_params(raw), prepared, augmented, args.figures or Path(scratch) / "figures")
                    accuracy = run_once(raw, augmented, prepared, test_sets)
                    results.append({"model": model, "copies": mode == "offline", "seed": seed,
                                    "train_images": summary["train_images"], **accuracy})
                    log.info("%s", results[-1])

    print(f"\n{'model':<9} {'copies':<7} {'train':>5}  " + "  ".join(f"{name:>20}" for name in test_sets))
    for model in args.models:
        for copies in (False, True):
            rows = [row for row in results if row["model"] == model and row["copies"] == copies]
            cells = [f"{np.mean([row[name] for row in rows]):.3f} ± {np.std([row[name] for row in rows]):.3f}"
                     for name in test_sets]
            print(f"{model:<9} {'yes' if copies else 'no':<7} {rows[0]['train_images']:>5}  "
                  + "  ".join(f"{cell:>20}" for cell in cells))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Stage features: a frozen pretrained base's output for the training and validation images, computed
once (data/features), for the transfer presets whose base does not train. Other models get a record saying
why there is nothing to compute.

It reads no params: check_params writes what decides the features (data/features_spec.json), so an
experiment that changes only the head (dropout, l2, learning_rate, epochs, arch.dense) does not re-run it."""

import argparse

from refinelab.core.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("spec_file", help="what decides the features, written by check_params (data/features_spec.json)")
    parser.add_argument("train_dir", help="augment's output, naming the training set (data/augmented)")
    parser.add_argument("prepared_dir", help="prepared data, for the validation split (data/prepared)")
    parser.add_argument("out_dir", help="folder for the features (data/features)")
    args = parser.parse_args()
    from refinelab.core.backend import select_backend
    from refinelab.features.stage import compute_features, read_spec  # Keras is imported only to compute.

    select_backend(read_spec(args.spec_file).get("backend") or "tensorflow")  # Before Keras is imported.

    compute_features(args.spec_file, args.train_dir, args.prepared_dir, args.out_dir)


if __name__ == "__main__":
    run_stage(main)

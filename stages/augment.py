"""Stage augment: write the training set that train reads (data/augmented), its summary metrics and sample grids."""

import argparse

from refinelab.core.runner import run_stage
from refinelab.params.guard import stage_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prepared_dir", help="prepare's output (data/prepared)")
    parser.add_argument("out_dir", help="folder for the training split to use (data/augmented)")
    parser.add_argument("metrics_file", help="summary of the augmented set (metrics/augment.json)")
    parser.add_argument("figures_dir", help="folder for the grids of augmented samples (metrics/augment)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    # Its Keras work is a few preview images, or offline copies once per dataset: on an H100, starting
    # CUDA and compiling each op for the GPU made this stage 22 s.
    with stage_params(args.params, "augment", cpu_only=True) as params:
        from refinelab.augment.stage import augment
        from refinelab.core.fileio import write_json

        write_json(args.metrics_file, augment(params, args.prepared_dir, args.out_dir, args.figures_dir))


if __name__ == "__main__":
    run_stage(main)

"""Stage prepare: fetch + verify + decode the dataset, split it, write data/prepared and the data report."""

import argparse

from refinelab.core.runner import run_stage
from refinelab.params.guard import stage_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", help="folder for the prepared splits (data/prepared)")
    parser.add_argument("report_file", help="images per class per split, source, skipped files (metrics/data.json)")
    parser.add_argument("samples_dir", help="folder for a sample-image grid per split (metrics/data)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    with stage_params(args.params, "prepare") as params:
        from refinelab.prepare.stage import prepare  # Heavy imports only once the params are known good.

        prepare(params, args.out_dir, args.report_file, args.samples_dir)


if __name__ == "__main__":
    run_stage(main)

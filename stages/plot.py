"""Stage plot: learning curves, confusion-matrix heatmap, a grid of test predictions, the most confident mistakes (PNG)."""

import argparse

from refinelab.stage import run_stage, stage_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("live_plots_dir", help="dvclive's per-epoch series (metrics/train/plots/metrics)")
    parser.add_argument("prepared_dir", help="prepared data, for the test images (data/prepared)")
    parser.add_argument("probabilities_file", help="evaluate's test probabilities")
    parser.add_argument("out_dir", help="folder for the PNG figures (metrics/figures)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    with stage_params(args.params, "plot") as params:
        from refinelab.plotting import plot_all

        plot_all(
            args.live_plots_dir, args.prepared_dir, args.probabilities_file, args.out_dir,
            params.plot.grid_size, params.plot.gallery_size,
        )


if __name__ == "__main__":
    run_stage(main)

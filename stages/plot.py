"""Stage plot: learning curves, confusion-matrix heatmap, a grid of test predictions, the most confident mistakes (PNG)."""

import argparse

from refinelab.core.runner import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("live_plots_dir", help="dvclive's per-epoch series (metrics/train/plots/metrics)")
    parser.add_argument("prepared_dir", help="prepared data, for the test images (data/prepared)")
    parser.add_argument("probabilities_file", help="evaluate's test probabilities")
    parser.add_argument("out_dir", help="folder for the PNG figures (metrics/figures)")
    # Presentation only, so options of the command rather than params (dvc exp show lists params).
    parser.add_argument("--grid-size", type=int, default=25, help="test images in the predictions grid")
    parser.add_argument("--gallery-size", type=int, default=16, help="most confident mistakes shown")
    args = parser.parse_args()
    for option in ("grid_size", "gallery_size"):
        if not 1 <= getattr(args, option) <= 100:
            parser.error(f"--{option.replace('_', '-')}: expected 1 to 100")

    from refinelab.plot.stage import plot_all

    plot_all(args.live_plots_dir, args.prepared_dir, args.probabilities_file, args.out_dir, args.grid_size, args.gallery_size)


if __name__ == "__main__":
    run_stage(main)

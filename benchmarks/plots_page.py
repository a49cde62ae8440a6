"""The interactive plots of `dvc plots show` (learning curves and the normalized confusion matrix) as one
PNG, for the README: what the page at dvc_plots/index.html shows for the committed results.

Not part of the pipeline: it renders DVC's Vega-Lite specs with vl-convert, which the project does not
install (`pip install vl-convert-python==1.9.0.post1` in any environment with Pillow; `dvc` on PATH):

    python benchmarks/plots_page.py [--revs REV ...] [--out benchmarks/results/plots_page.png]

With revisions (`--revs main exp-name`) it renders `dvc plots diff` instead: one line per revision.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
VEGA_PLOTS = ("Loss", "Accuracy", "Confusion normalized")


def vega_specs(revisions: list[str]) -> dict[str, dict]:
    command = ["dvc", "plots", "diff", *revisions] if revisions else ["dvc", "plots", "show"]
    shown = json.loads(subprocess.run([*command, "--json"], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout)["data"]
    return {name: shown[name][0]["content"] for name in VEGA_PLOTS if name in shown}


def main() -> None:
    import vl_convert

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--revs", nargs="*", default=[], help="revisions to overlay (dvc plots diff)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "plots_page.png")
    args = parser.parse_args()
    images = [Image.open(io.BytesIO(vl_convert.vegalite_to_png(spec, scale=1.5)))
              for spec in vega_specs(args.revs).values()]
    page = Image.new("RGB", (sum(image.width for image in images), max(image.height for image in images)), "white")
    left = 0
    for image in images:
        page.paste(image, (left, 0))
        left += image.width
    args.out.parent.mkdir(parents=True, exist_ok=True)
    page.save(args.out, optimize=True)
    print(f"wrote {args.out} ({page.width}x{page.height})")


if __name__ == "__main__":
    main()

"""Peak memory of `prepare` on a large image folder (the issue's 50,000-image check). Not a test.

    python benchmarks/folder_dataset_memory.py /tmp/bench --images 50000 --size 32

Writes a class-per-subfolder tree of random PNGs under WORK_DIR/images (kept between runs), runs
the real prepare stage on it in a child process, and prints the child's peak RSS and wall time.
"""

import argparse
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from refinelab.params.files import read_config, write_config

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("benchmark")


def generate(folder: Path, images: int, size: int, classes: int, seed: int = 0) -> None:
    """Random RGB PNGs, ``images`` in all, spread evenly over ``classes`` subfolders."""
    rng = np.random.default_rng(seed)
    for index in range(images):
        path = folder / f"class_{index % classes}" / f"{index:06d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    folder = args.work_dir / "images"
    started = time.perf_counter()
    generate(folder, args.images, args.size, args.classes)
    log.info("folder ready: %d PNGs of %dx%d in %.0f s", args.images, args.size, args.size, time.perf_counter() - started)

    params = read_config(ROOT / "params.yaml")
    params["dataset"] = "image_folder"
    params["image_folder"] = {"path": str(folder)}
    params_file = write_config(args.work_dir, params)
    out = args.work_dir / "out"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py"), str(out / "prepared"), str(out / "data.json"),
         str(out / "data"), "--params", str(params_file)],
        check=True,
    )
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB.
    decoded_mib = args.images * args.size * args.size * 3 / 2**20
    log.info("prepare: %.0f s, peak RSS %.0f MiB (the decoded dataset is %.0f MiB)", seconds, peak_mib, decoded_mib)


if __name__ == "__main__":
    main()

"""The README's commands install what the machine can use: TensorFlow with CUDA where `nvidia-smi`
lists a GPU, the CPU build elsewhere (checked with `make -n`, which prints the recipe without running it)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def setup_recipe(tmp_path, nvidia_smi: str | None) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if nvidia_smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{nvidia_smi}\n")
        fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(["make", "-n", "-B", "setup", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, check=True)
    return result.stdout


def test_a_listed_gpu_gets_tensorflow_with_cuda_of_the_locked_version(tmp_path):
    recipe = setup_recipe(tmp_path, 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)"')
    locked = next(line.split("==")[1] for line in (ROOT / "requirements.lock").read_text().splitlines()
                  if line.startswith("tensorflow_cpu=="))
    assert f"'tensorflow[and-cuda]=={locked}'" in recipe
    assert recipe.index("uninstall") < recipe.index("install --quiet 'tensorflow[and-cuda]")  # No CPU file left.
    assert ".installed-gpu" in recipe


@pytest.mark.parametrize("nvidia_smi", [None, "echo 'No devices were found'; exit 6"])
def test_no_gpu_keeps_the_cpu_build(tmp_path, nvidia_smi):
    recipe = setup_recipe(tmp_path, nvidia_smi)
    assert "and-cuda" not in recipe and "uninstall" not in recipe
    assert "-c requirements.lock -e '.[test]'" in recipe

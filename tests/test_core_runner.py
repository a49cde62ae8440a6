"""Progress: bars on a terminal (a pseudo-terminal here), plain lines in a log file or DVC's queue."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import numpy as np
from PIL import Image

from refinelab.params.files import read_config, write_config

from helpers import ROOT, write_prepared


def run_prepare(workdir, on_a_terminal: bool) -> str:
    command = [sys.executable, str(ROOT / "stages/prepare.py"), "data/prepared", "metrics/data.json", "metrics/data"]
    if not on_a_terminal:
        return subprocess.run(command, cwd=workdir, capture_output=True, text=True, check=True).stderr
    controller, terminal = pty.openpty()
    # A fresh pseudo-terminal is 0 columns wide, and tqdm draws a bar as wide as the terminal.
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = subprocess.Popen(command, cwd=workdir, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # The terminal closed: the stage ended.
            break
        if not chunk:
            break
        output += chunk
    assert process.wait() == 0, output.decode(errors="replace")
    os.close(controller)
    return output.decode(errors="replace")


def test_prepare_shows_a_progress_bar_on_a_terminal_only(tmp_path):
    for label in ("cats", "dogs"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for index in range(6):
            Image.fromarray(np.full((10, 12, 3), 40 * index, np.uint8)).save(tmp_path / "photos" / label / f"{index}.png")
    raw = read_config(ROOT / "params.yaml")
    raw.update(dataset="image_folder")
    raw["data"].update(image_size=[8, 8])
    raw["image_folder"]["path"] = str(tmp_path / "photos")
    workdir = tmp_path / "project"
    workdir.mkdir()
    write_config(workdir, raw)
    assert "decoding train" in run_prepare(workdir, on_a_terminal=True)
    assert "decoding train" not in run_prepare(workdir, on_a_terminal=False)


def test_training_draws_keras_bar_on_a_terminal_and_one_line_per_epoch_elsewhere(tmp_path, monkeypatch, capfd):
    from refinelab.params.schema import parse_params
    from refinelab.train import stage

    raw = read_config(ROOT / "params.yaml")
    raw.update(epochs=1, batch_size=16)
    params = parse_params(raw)
    prepared = write_prepared(tmp_path / "prepared", (8, 8, 1), 2, counts=(32, 8, 8))
    for terminal in (True, False):
        monkeypatch.setattr(stage, "on_terminal", lambda: terminal)
        stage.train(params, prepared, prepared, tmp_path / f"{terminal}/model.keras", tmp_path / f"{terminal}/live")
        printed = capfd.readouterr().out
        assert ("━" in printed) == terminal, printed  # Keras' bar; verbose=2 prints "2/2 - 1s - ..." lines.
        assert "2/2" in printed

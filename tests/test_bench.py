"""`make bench` cannot rot: its --quick mode (digits, 1 epoch) runs refinelab's default `dvc exp run` and
the bare-Keras peer (the presets take the same `dvc exp run` path) and writes the table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_the_quick_benchmark_measures_every_entry_against_the_peer(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--out", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (report_file,) = tmp_path.glob("*-quick.json")
    report = json.loads(report_file.read_text())
    assert set(report["results"]) == {"keras_peer", "refinelab_default"}
    assert report["machine"]["cores"] and report["machine"]["tensorflow"]
    peer = report["results"]["keras_peer"]
    assert peer["wall_vs_peer"] == 1.0 and peer["train_speed_vs_peer"] == 1.0
    default = report["results"]["refinelab_default"]
    assert {"prepare", "augment", "train", "evaluate", "plot"} <= set(default["stages"])
    for entry in report["results"].values():
        assert entry["epochs"] == 1 and 0 <= entry["test_accuracy"] <= 1 and entry["peak_rss_mb"] > 0
    assert default["batch_size"] == peer["batch_size"]
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| refinelab_default |" in table and "Machine:" in table

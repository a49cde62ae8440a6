"""`make bench` cannot rot: its --quick mode (digits, 1 epoch) runs refinelab's default `dvc exp run` and
the bare-Keras peer (the presets take the same `dvc exp run` path) and writes the table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT

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
        assert entry["epoch_seconds"] > 0  # refinelab's from its train log line, the peer's measured.
    assert default["batch_size"] == peer["batch_size"]
    table = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| refinelab_default |" in table and "Machine:" in table


def test_a_gpu_run_writes_a_table_of_its_own_and_keeps_the_cpu_one(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import write_markdown

    entry = {"wall_seconds": 10.0, "train_seconds": 8.0, "train_images_per_second": 100.0, "epochs": 1,
             "batch_size": 8, "test_accuracy": 0.5, "peak_rss_mb": 10, "wall_vs_peer": 1.0, "train_speed_vs_peer": 1.0,
             "stages": {"train": {"seconds": 8.0, "peak_rss_mb": 10}}}
    machine = {"cpu": "some CPU", "cores": 2, "python": "3.11", "tensorflow": "2.21.0", "jax": None, "keras": "3.15.1",
               "backend": "tensorflow", "gpu": None}

    def report(gpu, accuracy):
        results = {"refinelab_default": {**entry, "test_accuracy": accuracy}, "keras_peer": entry}
        return {"mode": "full", "date": "now", "machine": {**machine, "gpu": gpu}, "results": results}

    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n<!-- bench:start -->\nold\n<!-- bench:end -->\n\n## Notes\n\nkept\n")
    write_markdown(path, report(None, 0.25))
    write_markdown(path, report("NVIDIA H100", 0.75))
    write_markdown(path, report("NVIDIA H100", 0.875))  # Replaces the GPU table, adds no second one.
    text = path.read_text()
    assert "old" not in text and "kept" in text and text.count("<!-- bench:gpu:start -->") == 1
    cpu_table, gpu_table = text.split("<!-- bench:start -->")[1], text.split("<!-- bench:gpu:start -->")[1]
    assert "| 0.2500 |" in cpu_table.split("<!-- bench:end -->")[0] and "GPU: none" in cpu_table
    assert "| 0.8750 |" in gpu_table and "0.7500" not in gpu_table and "GPU: NVIDIA H100" in gpu_table
    assert "| n/a |" in gpu_table  # Entries measured before epoch_seconds existed.


def test_the_epoch_overhead_benchmark_times_every_variant_in_every_round(tmp_path):
    """benchmarks/epoch_overhead.py (the interleaved peer-against-refinelab epochs) on a tiny project."""
    import keras

    from helpers import write_prepared

    write_prepared(tmp_path / "data/prepared", (8, 8, 1), num_classes=3, counts=(96, 32, 32))
    (tmp_path / "models").mkdir()
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "models/model.keras")
    (tmp_path / "models/params.json").write_text(json.dumps({"batch_size": 16, "seed": 1, "learning_rate": 0.01}))
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/epoch_overhead.py"), "--project", str(tmp_path), "--out",
         str(tmp_path / "results"), "--rounds", "2", "--epochs", "2", "--steps-per-execution", "1", "2"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    (report_file,) = (tmp_path / "results").glob("*-epoch_overhead.json")
    report = json.loads(report_file.read_text())
    epochs = report["median_epoch_seconds"]
    assert report["host_microseconds_per_batch"]["refinelab_gather"] > 0
    assert set(epochs) == {"peer_spe1", "refinelab_spe1", "peer_spe2", "refinelab_spe2"}
    assert all(len(rounds) == 2 and min(rounds) > 0 for rounds in epochs.values())

"""TensorFlow's C++ start-up noise is kept off a stage's stderr unless --debug asks for it; nothing else is."""

import os
import subprocess
import sys
import threading

import pytest

from refinelab.core.native_logs import forward

from helpers import ROOT

NOISE_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796420135.991446   27344 port.cc:153] oneDNN custom operations are on.\n",
    b"E0000 00:00:1796420139.761478   27344 node_def_util.cc:682] NodeDef mentions attribute "
    b"use_unbounded_threadpool which is not in the op definition\n",
    b"I0000 00:00:1796420852.237238   32023 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    b"available CPU instructions in performance-critical operations.\n",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
    b"appropriate compiler flags.\n",
]
KEPT_LINES = [
    b"21:35:42 WARNING refinelab.evaluate.health: health check (train): 1 warning\n",
    b"E0000 00:00:1796420139.761478   27344 allocator.cc:1] Out of memory while allocating\n",  # A real error.
    b"Traceback (most recent call last):\n",
]


def test_forward_drops_only_the_noise_and_passes_a_partial_line_at_once():
    source, sink = os.pipe()
    out_read, out_write = os.pipe()
    thread = threading.Thread(target=forward, args=(source, out_write))
    thread.start()
    os.write(sink, b"".join(NOISE_LINES + KEPT_LINES))
    # A progress bar's line has no end yet: it must show now, not when the line ends.
    os.write(sink, b"\rdecoding:  50%|#####     | 5/10")
    received = b""
    while not received.endswith(b"5/10"):
        received += os.read(out_read, 65536)
    os.close(sink)
    thread.join(timeout=10)
    os.close(out_write)
    with os.fdopen(out_read, "rb") as rest:
        received += rest.read()
    assert received == b"".join(KEPT_LINES) + b"\rdecoding:  50%|#####     | 5/10"


SCRIPT = """
import logging, sys
from refinelab.core.runner import run_stage

def main():
    import numpy as np, tensorflow as tf
    list(tf.data.Dataset.from_tensor_slices(np.arange(4)).map(lambda x: x * 2, num_parallel_calls=2))
    logging.getLogger("refinelab").warning("the stage's own warning")
    print("to stdout", flush=True)

run_stage(main)
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_stage_hides_tensorflows_start_up_noise_unless_debug(tmp_path, debug):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("REFINELAB_DEBUG", None)
    if debug:
        env["REFINELAB_DEBUG"] = "1"
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "the stage's own warning" in result.stderr and result.stdout == "to stdout\n"
    shown = [marker in result.stderr for marker in ("absl::InitializeLog", "oneDNN custom operations")]
    assert shown == [debug, debug], result.stderr


def test_a_crash_s_last_line_reaches_the_terminal(tmp_path):
    """A C++ check failure aborts the process: the filter, a process of its own, still drains its line."""
    script = (
        "import os\n"
        "from refinelab.core.runner import setup_logging\n"
        "setup_logging()\n"
        "os.write(2, b'I0000 00:00:1.2   1 port.cc:153] noise\\n')\n"
        "os.write(2, b'F0000 00:00:1.2   1 check.cc:1] Check failed: the real cause\\n')\n"
        "os.abort()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode != 0
    assert "Check failed: the real cause" in result.stderr and "noise" not in result.stderr


def test_the_filter_keeps_draining_when_its_reader_is_gone():
    """Writers to fd 2 must never block on a full pipe because the terminal went away."""
    source, sink = os.pipe()
    out_read, out_write = os.pipe()
    os.close(out_read)  # Nobody reads the filter's output any more.
    thread = threading.Thread(target=forward, args=(source, out_write))
    thread.start()
    for _ in range(8):
        os.write(sink, b"a line that goes nowhere\n" * 4096)  # 800 KB: far more than a pipe holds.
    os.close(sink)
    thread.join(timeout=30)
    assert not thread.is_alive()
    os.close(out_write)
    os.close(source)

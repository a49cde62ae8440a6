"""The C++ runtimes' start-up messages, kept off a stage's stderr unless --debug asks for them.

TensorFlow writes them to file descriptor 2 from C++ before absl's logging is initialised, where neither
TF_CPP_MIN_LOG_LEVEL nor Python's logging reaches: "All log messages before absl::InitializeLog()", the
oneDNN notice, and on every tf.data map an E-level "NodeDef mentions attribute use_unbounded_threadpool"
that reads like a failure (TensorFlow's Python graph meeting its own older op definition: harmless). So fd 2
goes through a pipe whose reader drops those lines and forwards every other byte as it comes.
"""

from __future__ import annotations

import atexit
import faulthandler
import os
import re
import sys
import threading

# absl's line prefix: severity and date, time, thread, file:line].
ABSL = rb"\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "
NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    rb"|[IW]" + ABSL  # INFO and WARNING, which TF_CPP_MIN_LOG_LEVEL=2 means to hide once absl is set up
    + rb"|E" + ABSL + rb"(NodeDef mentions attribute use_unbounded_threadpool|Unable to register cu\w+ factory)"
    # The second line of cpu_feature_guard's INFO message.
    + rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$"
)
# A line that may become noise is held until its end; anything else (a progress bar's partial line) goes
# out at once.
MAYBE_NOISE = (b"I", b"W", b"E")

_installed = False


def forward(pipe: int, out: int) -> None:
    """Copy ``pipe`` to ``out`` until the pipe's end closes, leaving out NOISE lines."""
    pending = b""
    while chunk := os.read(pipe, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
        if pending[:1] not in MAYBE_NOISE:
            kept, pending = kept + pending, b""
        if kept:
            os.write(out, kept)
    if pending and not NOISE.match(pending):
        os.write(out, pending)
    os.close(pipe)


def hide_native_noise() -> None:
    """Filter fd 2 for the rest of the process, once. Not when a host (pytest, a notebook) has replaced
    ``sys.stderr``: its capture stays as it is."""
    global _installed
    if _installed or sys.stderr is None or sys.stderr is not sys.__stderr__:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    # A crash's report goes straight to the terminal: the reader thread dies with the process.
    faulthandler.enable(file=real)
    thread = threading.Thread(target=forward, args=(read, real), name="native-stderr", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # Closes the pipe's last writer: the reader drains it and ends.
        thread.join(timeout=5)

    atexit.register(restore)
    _installed = True

"""The C++ runtimes' start-up messages, kept off a stage's stderr unless --debug asks for them.

TensorFlow writes them to file descriptor 2 from C++ before absl's logging is initialised, where neither
TF_CPP_MIN_LOG_LEVEL nor Python's logging reaches: "All log messages before absl::InitializeLog()", the
oneDNN notice, and on every tf.data map an E-level "NodeDef mentions attribute use_unbounded_threadpool"
that reads like a failure (TensorFlow's Python graph meeting its own older op definition: harmless). So fd 2
goes through a pipe to a small filter process (``python -m refinelab.core.native_logs``) that drops those
lines and forwards every other byte as it comes. A process, not a thread: it drains the pipe to its end
even after the stage dies (a C++ check failure's last line is the cause of the crash), and needs no GIL.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import subprocess
import sys

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


def write_all(out: int, data: bytes) -> bool:
    """Write all of ``data``; False once ``out`` accepts no more (its reader gone)."""
    try:
        while data:
            data = data[os.write(out, data):]
    except OSError:
        return False
    return True


def forward(pipe: int, out: int) -> None:
    """Copy ``pipe`` to ``out`` until the pipe's end closes, leaving out NOISE lines. When ``out`` fails,
    the rest is read and dropped: the writers must never block on a full pipe."""
    pending, open_out = b"", True
    while chunk := os.read(pipe, 65536):
        if not open_out:
            continue
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not NOISE.match(line))
        if pending[:1] not in MAYBE_NOISE:
            kept, pending = kept + pending, b""
        open_out = write_all(out, kept)
    if open_out and pending and not NOISE.match(pending):
        write_all(out, pending)


def hide_native_noise() -> None:
    """Filter fd 2 for the rest of the process, once. Not when a host (pytest, a notebook) has replaced
    ``sys.stderr``: its capture stays as it is."""
    global _installed
    if _installed or sys.stderr is None or sys.stderr is not sys.__stderr__:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read, write = os.pipe()
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=read, stdout=real, stderr=real,
                                 close_fds=True, start_new_session=True)  # Ctrl-C is the stage's, not the filter's.
    except (OSError, ValueError):
        return
    os.close(read)
    os.dup2(write, 2)
    os.close(write)

    def restore() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(real, 2)  # Closes this process's end of the pipe: the filter drains it and ends.
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)

    atexit.register(restore)
    _installed = True


if __name__ == "__main__":
    forward(sys.stdin.fileno(), sys.stdout.fileno())

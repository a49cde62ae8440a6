"""What every stage script shares: logging, and errors reported as one line instead of a traceback."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from refinelab.core.environment import DEBUG_ENV
from refinelab.core.errors import RefinelabError, WorkspaceBusyError
from refinelab.core.native_logs import hide_native_noise

log = logging.getLogger("refinelab")


def setup_logging(level: int = logging.INFO) -> None:
    """Log lines with the time; TensorFlow's C++ start-up chatter hidden unless debug messages are asked for."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # What absl honours once it is set up.
    if level > logging.DEBUG:
        hide_native_noise()  # What it writes before.
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def on_terminal() -> bool:
    """Whether stdout is a terminal: progress bars there; in logs and DVC's queue one line per epoch
    (Keras' bar redraws itself with control characters, which a log file keeps)."""
    return sys.stdout.isatty()


# Errors of the machine or of a path given, not of the code: a full disk, a read-only or forbidden folder,
# a file where a folder should be.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR}


def environment_error(exc: OSError) -> str | None:
    """The one line that reports ``exc`` when it is an error of the machine (ENVIRONMENT_ERRNOS), else None."""
    if exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    return f"{exc.filename or 'writing the output'}: {exc.strerror}"


# The experiment lock DVC takes before it writes `dvc exp run -S` values into the workspace (for a
# workspace or --temp run; a --queue run takes another). DVC holds it only while it applies the values,
# not while the stages run: a second `dvc exp run` would write its values under a running stage and fail
# only after. A stage holds it while it runs, so that second run is refused before it writes anything.
EXPERIMENT_LOCK_DIR = Path(".dvc", "tmp", "exps")
WORKSPACE_RUN_LOCK = "refs/exps/stash"
# DVC shows it when the lock is busy, and in its warning when it removes the lock of a killed stage.
BUSY_MESSAGE = (
    "refinelab's {stage} stage (while one runs, try other values with `dvc exp run --queue -S ...`, then "
    "`dvc queue start` once it ends)"
)


@contextlib.contextmanager
def workspace_run_lock(stage: str) -> Iterator[None]:
    """Hold DVC's workspace-run lock while the stage runs (nothing outside a DVC project)."""
    if not EXPERIMENT_LOCK_DIR.parent.parent.is_dir():
        yield
        return
    from dvc.fs import localfs
    from dvc.lock import LockError
    from dvc.rwlock import rwlock

    EXPERIMENT_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    held = contextlib.ExitStack()
    try:
        held.enter_context(rwlock(str(EXPERIMENT_LOCK_DIR.resolve()), localfs, BUSY_MESSAGE.format(stage=stage), [],
                                  [WORKSPACE_RUN_LOCK], hardlink=False))
    except LockError as exc:
        # Another `dvc exp run` is writing its values into params.yaml: going on would train on a mix.
        holders = "; ".join(re.findall(r"\(PID \d+\): [^\n]*", str(exc))) or str(exc).splitlines()[0]
        raise WorkspaceBusyError(
            f"{stage}: another `dvc exp run` is changing this workspace's params ({holders}); this run stops rather "
            "than train on a mix of both runs' values. Run experiments one at a time here, or queue them: "
            "`dvc exp run --queue -S ...`, then `dvc queue start`") from None
    with held:
        yield


def debug_requested() -> bool:
    """Whether REFINELAB_DEBUG asks for tracebacks of user errors too."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def run_stage(main: Callable[[], None], writes_workspace: Callable[[], bool] = lambda: True) -> None:
    """Run a stage's ``main`` under the workspace lock (unless ``writes_workspace()`` says it writes
    nothing there); a user error, or a full disk or unwritable folder, exits with status 2 and one line
    naming its cause, Ctrl-C with status 130 and one line (any other exception is a bug and keeps its
    traceback).

    ``--debug`` on the command line (or REFINELAB_DEBUG=1) keeps the traceback of user errors too.
    """
    debug = "--debug" in sys.argv or debug_requested()
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    setup_logging(logging.DEBUG if debug else logging.INFO)
    try:
        with workspace_run_lock(Path(sys.argv[0]).stem) if writes_workspace() else contextlib.nullcontext():
            main()
    except RefinelabError as exc:
        if debug:
            raise
        log.error("%s", exc)
        sys.exit(2)
    except OSError as exc:
        if debug or (message := environment_error(exc)) is None:
            raise
        log.error("%s", message)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C: a user's decision, not a bug; the traceback (TensorFlow's) says nothing.
        if debug:
            raise
        log.error("interrupted; the same command runs it again: a training kept in a backup (one phase, one "
                  "worker) continues after its last finished epoch, the rest starts over (no output is ever "
                  "left half-written)")
        sys.exit(130)

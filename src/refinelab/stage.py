"""What every stage script shares: logging, and errors reported as one line instead of a traceback."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable

from refinelab.errors import RefinelabError

log = logging.getLogger("refinelab")


def setup_logging(level: int = logging.INFO) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TensorFlow's C++ start-up chatter out of the log.
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


# Errors of the machine, not of the code: a full disk, a read-only or forbidden folder.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a user error, or a full disk or unwritable folder, exits with status 2
    and one line naming its cause (any other exception is a bug and keeps its traceback)."""
    setup_logging()
    try:
        main()
    except RefinelabError as exc:
        log.error("%s", exc)
        sys.exit(2)
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        log.error("%s: %s", exc.filename or "writing the stage's output", exc.strerror)
        sys.exit(2)

"""What every stage script shares: logging, and errors reported as one line instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from refinelab.errors import RefinelabError

log = logging.getLogger("refinelab")


def setup_logging(level: int = logging.INFO) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TensorFlow's C++ start-up chatter out of the log.
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main``; a user error exits with status 2 and a message naming its cause."""
    setup_logging()
    try:
        main()
    except RefinelabError as exc:
        log.error("%s", exc)
        sys.exit(2)

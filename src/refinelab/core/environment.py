"""refinelab's environment variables: machine settings, never params (none of them changes a result)."""

import os

from refinelab.core.errors import ParamsError

# Read no more: the thread count changes results, so it is the param train.threads (check_params says so).
RETIRED_THREADS_ENV = "REFINELAB_THREADS"
# Where training backups live (refinelab.train.resume); default: beside the model. `refinelab search` points a
# study's trials at one folder, so that a halving rung continues from the previous rung's backup.
RESUME_DIR_ENV = "REFINELAB_RESUME_DIR"
# Where JAX keeps compiled programs between processes (refinelab.core.backend); "off" keeps none.
JAX_CACHE_ENV = "REFINELAB_JAX_CACHE"
# Where downloads, extracted archives and JAX's programs are kept (refinelab.core.fileio.cache_root).
CACHE_ENV = "REFINELAB_CACHE"
# Any value but "" or 0: tracebacks of user errors too (as --debug does).
DEBUG_ENV = "REFINELAB_DEBUG"


def check_retired() -> None:
    """A variable refinelab reads no more is an error, not ignored: runs would differ from what its user meant."""
    if (value := os.environ.get(RETIRED_THREADS_ENV)) is not None:
        raise ParamsError(f"{RETIRED_THREADS_ENV}={value!r} is read no more: the number of threads changes results, so "
                          "it is the param train.threads (`dvc exp run -S train.threads=N`); unset it")

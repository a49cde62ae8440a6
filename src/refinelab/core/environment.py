"""refinelab's environment variables: machine settings, never params (none of them changes a result)."""

# Threads TensorFlow may use in train (intra- and inter-op): cores / workers when DVC queue workers share a
# machine (`refinelab search --jobs N` sets it).
THREADS_ENV = "REFINELAB_THREADS"
# Where training backups live (refinelab.train.resume); default: beside the model. `refinelab search` points a
# study's trials at one folder, so that a halving rung continues from the previous rung's backup.
RESUME_DIR_ENV = "REFINELAB_RESUME_DIR"
# Where JAX keeps compiled programs between processes (refinelab.core.backend); "off" keeps none.
JAX_CACHE_ENV = "REFINELAB_JAX_CACHE"
# Where downloads, extracted archives and JAX's programs are kept (refinelab.core.fileio.cache_root).
CACHE_ENV = "REFINELAB_CACHE"
# Any value but "" or 0: tracebacks of user errors too (as --debug does).
DEBUG_ENV = "REFINELAB_DEBUG"

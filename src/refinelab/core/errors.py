"""Errors a user can act on: they are reported as one clear message, not a traceback."""


class RefinelabError(Exception):
    """Base class for errors caused by the user's params, files or data."""


class ParamsError(RefinelabError, ValueError):
    """params.yaml has an unknown key, a wrong type or an out-of-range value."""


class DataError(RefinelabError, ValueError):
    """An input file is missing, corrupt or does not match its checksum or layout."""


class ClusterError(RefinelabError):
    """Another worker of a multi-worker training cluster stopped or cannot be reached."""


class WorkspaceBusyError(RefinelabError):
    """Another `dvc exp run` holds the workspace: this one would run on a mix of both runs' params."""

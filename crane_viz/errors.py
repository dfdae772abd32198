"""Errors users can act on: the CLI prints their message on one line and exits with status 2."""


class CraneVizError(Exception):
    """Base class of every error crane_viz reports to a user without a traceback."""


class InputError(CraneVizError, ValueError):
    """A setting or an input file is out of bounds or malformed; the message names the bound."""


class CheckpointError(CraneVizError):
    """A checkpoint folder is missing, corrupt or does not match its configuration."""


class DatasetError(CraneVizError):
    """A dataset file is missing, corrupt or not in the crane_viz layout."""


class TrainingDiverged(CraneVizError):
    """The training loss became NaN or infinite; the last finished epoch stays on disk."""


class Cancelled(CraneVizError):
    """The user cancelled long work (an export, a sweep, a training job); the message says what
    was kept: nothing half-written is ever left behind."""

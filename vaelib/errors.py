"""The errors vaelib raises. Each message says what went wrong and what to try."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), or its type's name."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


class VaelibError(Exception):
    """Base class: an error with a message written for the person running the code."""


class DataError(VaelibError):
    """A dataset could not be found, read or fetched."""


class CheckpointError(VaelibError):
    """A checkpoint is missing, damaged, unsafe, or made for another model."""


class TrainingDiverged(VaelibError):
    """The loss became NaN or infinite. The last good checkpoint is kept."""


class DeviceError(VaelibError):
    """The device asked for (e.g. ``cuda``) does not exist on this machine."""


class OutputError(VaelibError):
    """A file cannot be written where it was asked for: not a regular file, or another run is writing it."""


class OutOfMemory(VaelibError):
    """A model does not fit in this machine's memory."""


class ConfigError(VaelibError, ValueError):
    """A setting that cannot work: a recipe or a model configuration out of range, a switch that is neither on
    nor off. Also a ``ValueError``, as Python's own checks of a value are."""


class UsageError(ConfigError):
    """Command-line arguments that cannot work together; the command line exits with code 2."""

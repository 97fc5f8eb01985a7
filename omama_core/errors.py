"""Errors that omama raises for problems a user can fix.

Every message names what is wrong (a file, a size, a value) and what to do about it. Code
that catches `OmamaError` can show `str(error)` to a person as it is.
"""


class OmamaError(Exception):
    """Base class of every user-facing omama error."""


class ConfigError(OmamaError):
    """A configuration name, file or value is invalid."""


class WeightsNotFoundError(OmamaError):
    """A weights file the configuration needs is missing, unreadable or corrupt."""


class CheckpointMismatchError(OmamaError):
    """A checkpoint does not fit the model it is loaded into (keys, shapes or config)."""


class DeviceError(OmamaError):
    """The requested compute device is not available."""


class InputError(OmamaError):
    """An image or mask given to the matcher cannot be used."""


class DatasetError(OmamaError):
    """A dataset path or file is not in the expected format."""

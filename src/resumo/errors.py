"""User-facing errors: the CLI prints these as one line, without a traceback."""


class ResumoError(Exception):
    """Bad input or environment that the user can fix; the message says how."""


class ConfigError(ResumoError):
    """A configuration value is missing, unknown or out of range."""


class StorageError(ResumoError):
    """An object store or path could not be read or written."""


class DataError(ResumoError):
    """Input data is malformed or too small for what was asked."""

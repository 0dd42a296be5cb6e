"""Exceptions: a failed libkd call raises the KdError subclass of its kd_status.

Each carries status (the kd_status number), function (the C function that failed) and message
(the library's sentence, kd_last_error(), naming the argument and what was expected). The
subclasses also derive from the closest built-in exception, so `except ValueError` catches a
bad argument and `except OSError` a file that cannot be read.

    try:
        kd.Model("input 4 | bogus 3")
    except kd.FormatError as e:
        print(e.message)          # the library's own words
"""

__all__ = ["KdError", "ArgumentError", "ShapeError", "NoMemoryError", "KdIOError", "FormatError",
           "NumericError", "StateError", "UnsupportedError", "error_for"]


class KdError(Exception):
    """A libkd call failed: status is the kd_status, message the library's sentence."""

    status = None

    def __init__(self, status, function, message, reason=""):
        self.status = status
        self.function = function
        self.message = message
        super().__init__("%s: %s: %s" % (function, reason or "status %d" % status, message))


class ArgumentError(KdError, ValueError):
    """KD_ERR_ARGUMENT: an argument out of its range (a NULL, a negative size, an unknown key)."""


class ShapeError(KdError, ValueError):
    """KD_ERR_SHAPE: sizes that do not agree (a model and a file, a layer and a loss)."""


class NoMemoryError(KdError, MemoryError):
    """KD_ERR_NOMEM: an allocation failed (input over a kd.set_limit budget is FormatError)."""


class KdIOError(KdError, OSError):
    """KD_ERR_IO: a file could not be opened, read or written; message gives the system's reason."""


class FormatError(KdError, ValueError):
    """KD_ERR_FORMAT: a file or a spec string that does not parse, or input over a budget of
    kd.set_limit (a spec with too many values, a file too large to read)."""


class NumericError(KdError, ArithmeticError):
    """KD_ERR_NUMERIC: a non-finite value where a finite one is needed."""


class StateError(KdError, RuntimeError):
    """KD_ERR_STATE: a call out of order (a backward before any forward)."""


class UnsupportedError(KdError, NotImplementedError):
    """KD_ERR_UNSUPPORTED: valid, but not something this model or build can do."""


# kd_status -> class; a status this table does not know (a newer library) raises KdError itself
_BY_STATUS = {1: ArgumentError, 2: ShapeError, 3: NoMemoryError, 4: KdIOError, 5: FormatError,
              6: NumericError, 7: StateError, 8: UnsupportedError}


def error_for(status, function, message, reason=""):
    """The exception for a kd_status other than KD_OK."""
    return _BY_STATUS.get(status, KdError)(status, function, message, reason)

"""One family of user-facing errors.

A `RoadsegError` is a user mistake or an environment problem (missing file, wrong format, bad frame,
incompatible engine). Its message names the file and the fix; the CLI prints it as one line on
stderr and exits 1, without a traceback. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations


class RoadsegError(Exception):
    """A user-facing error: one line that says what is wrong, where, and how to fix it."""

    exit_code = 1


class UsageError(RoadsegError):
    """Wrong command-line usage (impossible sizes, unknown backend): exit 2 like argparse."""

    exit_code = 2


class MissingDependencyError(RoadsegError):
    """An optional library (tensorrt, pycuda, an ONNX Runtime provider) is not installed."""

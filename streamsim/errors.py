"""The few exception types that callers and the CLI catch.

Everything the CLI should report as a clean one-line error (exit code 1, no traceback) derives
from `StreamsimError`. Programming errors stay `ValueError` / `TypeError` / `AssertionError`.
"""

from __future__ import annotations


class StreamsimError(Exception):
    """A user-facing error: bad input, missing data, a conflicting request."""


class StorageError(StreamsimError):
    """The event store or run store refused an operation (missing dataset, duplicate name...)."""


class IngestError(StreamsimError):
    """An input file could not be parsed; the message names the file, row/column and expectation."""


class ScenarioError(StreamsimError):
    """A scenario file is invalid; the message names the file and the key path."""


class ModelError(StreamsimError):
    """A model or policy cannot be built or used as requested (unknown name, missing extra...)."""

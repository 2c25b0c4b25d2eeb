"""Typed errors of the core; the CLI maps each to one clear line and an exit status."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    CELL_FAILED = 1
    USAGE = 2
    # The CI gate (--assert, --fail-on-regress): a check failed; with --strict, a check was
    # left indeterminate (none failed). A failed cell (1) outranks both.
    GATE_FAILED = 3
    GATE_UNDECIDED = 4
    INTERRUPTED = 130


class EmbbenchError(Exception):
    """Base of every error embbench raises on purpose."""

    exit_status: ExitStatus = ExitStatus.CELL_FAILED


class UsageError(EmbbenchError):
    """The user asked for something that cannot be done as asked (bad flag, bad file)."""

    exit_status = ExitStatus.USAGE


class ConfigError(UsageError):
    """A config file or a combination of options is invalid."""


class UnknownVariantError(UsageError):
    pass


class PortInUseError(UsageError):
    pass


class ModelNotFoundError(UsageError):
    pass


class ModelError(UsageError):
    """A model folder that cannot be served as sentence-transformers computes it: broken, or a
    module or field embbench does not support. The message names it, on one line."""


class PeerUnavailableError(UsageError):
    """A peer server (TEI, infinity) cannot be started here; the message says what to do."""


class ServerStartError(EmbbenchError):
    """A server exited or never became healthy; the message carries the tail of its log."""


class LoadFailedError(EmbbenchError):
    """The load generator failed (Locust exited with an error): its cell measured nothing."""


class ResultsError(UsageError):
    """A results folder is missing, malformed or would be overwritten."""

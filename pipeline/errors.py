"""The exception hierarchy.

Every error the pipeline raises on purpose derives from :class:`PipelineError`, and its message
names the file, layer, field, config key or feature at fault, in one line. The CLI maps
:class:`ConfigError` / :class:`UsageError` to exit code 2 and every other ``PipelineError`` to
exit code 1; an interrupted run (:class:`Interrupted`) exits with 130 after Ctrl-C, 143 after
SIGTERM.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of all blacksoil errors."""


class ConfigError(PipelineError):
    """The job configuration is invalid (unknown key, missing key, bad value)."""


class UsageError(PipelineError):
    """The command was used wrongly (e.g. the output exists and --overwrite was not given)."""


class InputError(PipelineError):
    """An input file cannot be used: unreadable, missing layer or field, no CRS, no features."""


class OutputError(PipelineError):
    """The archive or report cannot be written (permissions, disk full, ...)."""


class InvariantError(PipelineError):
    """A survey invariant (conservation, reconciliation) does not hold."""


class Interrupted(KeyboardInterrupt):
    """A partitioned run was interrupted (Ctrl-C); the message says what is kept for
    ``--resume``. A ``KeyboardInterrupt``, so code that handles that still does."""

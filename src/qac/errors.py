"""The one error class for user mistakes.

Anything a user can get wrong (a bad path, an unknown solver name, an impossible NFE) raises
:class:`QACError` with a one-line message. The CLI prints it as ``error: <message>`` and exits
with code 2. Bugs keep their tracebacks.
"""

from __future__ import annotations


class QACError(Exception):
    """A user mistake, reported as one line (CLI exit code 2)."""


class OptionError(QACError, ValueError):
    """A bad value of a function's option (e.g. a solver's ``max_order``): a user mistake, and a
    ``ValueError`` for library callers who catch that."""

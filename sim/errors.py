"""One error type for every user-facing failure.

The CLI turns an :class:`LlmsimError` into a single line on stderr and exit code 2, so a bad
YAML file, a wrong flag value or a corrupt trace never shows a traceback.
"""

from __future__ import annotations


class LlmsimError(Exception):
    """A user-facing error: its message is the whole story (file, field, expected, found)."""

    exit_code = 2

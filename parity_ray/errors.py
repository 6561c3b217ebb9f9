"""Errors that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations

import difflib
from typing import Iterable

EXIT_USAGE = 2  # the exit code of a UsageError, for the CLI and every script


class UsageError(ValueError):
    """Bad input from the user: unknown names, bad values, missing files.

    The CLI prints ``parity-ray: error: <message>`` and exits with code 2, so the
    message must be a single line that names the problem and the valid choices.
    """


def choices_hint(name: str, choices: Iterable[str]) -> str:
    """``"valid choices: a, b, c (did you mean 'b'?)"`` for an unknown ``name``."""
    choices = sorted(choices)
    hint = f"valid choices: {', '.join(choices)}"
    close = difflib.get_close_matches(str(name), choices, n=1)
    if close:
        hint += f" (did you mean '{close[0]}'?)"
    return hint


def exit_on_usage_error(main, argv=None) -> int:
    """``main(argv)``'s exit code; a :class:`UsageError` it raises becomes ``<script>: error: <message>``
    on stderr and exit code 2, as the CLI does (for scripts outside it: the benchmarks)."""
    import sys

    try:
        return main(argv)
    except UsageError as exc:
        print(f"{sys.argv[0]}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

"""The one error type for user mistakes: bad files, bad records, bad options.

The CLI prints its message on one line and exits with status 2, without a traceback.
"""
from __future__ import annotations

from pathlib import Path


class PosebhError(Exception):
    """A user-facing error. The message names the file, the record and the field where known."""

    exit_code = 2


def input_error(file: str | Path | None, problem: str, record: object = None, field: str | None = None) -> PosebhError:
    """Build an error whose message reads `FILE: record R: field 'F': PROBLEM`."""
    parts = []
    if file is not None:
        parts.append(str(file))
    if record is not None:
        parts.append(f"record {record}")
    if field is not None:
        parts.append(f"field '{field}'")
    parts.append(problem)
    return PosebhError(": ".join(parts))

"""The one error type for user mistakes: bad files, bad records, bad options (and the fault points tests kill at).

The CLI prints its message on one line and exits with status 2, without a traceback.
"""
from __future__ import annotations

import os
import signal
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


def fault_point(name: str) -> None:
    """Kill this process here when the environment asks for it (fault-injection tests of resume and cleanup).

    `POSEBH_FAULT=NAME` or `NAME@N` sends SIGKILL on the N-th (default first) pass through the point NAME;
    unset, this is one dictionary lookup.
    """
    wanted = os.environ.get("POSEBH_FAULT")
    if not wanted:
        return
    target, _, nth = wanted.partition("@")
    if target != name:
        return
    _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
    if _FAULT_HITS[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_HITS: dict[str, int] = {}

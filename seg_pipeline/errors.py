"""The one exception type for problems a user can cause and fix (bad config, bad file, bad data), and how to
recognise the other problems on the user's side: a read-only home, a full disk."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class SegPipelineError(Exception):
    """A user-fixable problem. The message names the file, row, column or key and says what to do.

    ``hint``, when the message alone does not say it, is the next step; the CLI prints it on its own line.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def first_line(exc: BaseException) -> str:
    """The first line of an error's message for people to read (passwords and known secrets masked: driver
    errors may quote a DSN), or its type when it has no message."""
    from seg_pipeline.redact import redact

    text = str(exc).strip()
    return redact(text.splitlines()[0]) if text else type(exc).__name__


# --- the machine's side: a read-only home, a full disk -------------------------------------------------

READ_ONLY, FULL, DISK_ERROR, DENIED = "read-only", "full", "disk error", "denied"
# errno -> kind; EACCES/EPERM are PermissionError, which the CLI reports with the path to check
_ERRNOS = {errno.EROFS: READ_ONLY, errno.ENOSPC: FULL, errno.EDQUOT: FULL}
# what sqlite (also through SQLAlchemy and MLflow) and DuckDB say, lower case
_PHRASES = (
    ("read-only file system", READ_ONLY),
    ("readonly database", READ_ONLY),
    ("unable to open database file", READ_ONLY),
    ("database or disk is full", FULL),
    ("no space left on device", FULL),
    ("disk quota exceeded", FULL),
    ("disk i/o error", DISK_ERROR),
    ("permission denied", DENIED),
)


def storage_problem_of(text: str) -> str | None:
    """READ_ONLY, FULL, DISK_ERROR or DENIED when a database error's text says the disk refused, else None."""
    lowered = text.lower()
    return next((kind for phrase, kind in _PHRASES if phrase in lowered), None)


def storage_problem(exc: BaseException) -> tuple[str, str | None] | None:
    """(kind, the file named) when ``exc`` or an exception it wraps is a refused write, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):  # its errno says it; its text may quote anything
            kind, filename = _ERRNOS.get(current.errno), current.filename
        else:
            kind, filename = storage_problem_of(str(current)), None
        if kind:
            return kind, str(filename) if filename else None
        current = current.__cause__ or current.__context__
    return None


def storage_advice(kind: str, where: str, folder: str | None = None) -> tuple[str, str]:
    """(what happened, what to do) for a write refused at ``where`` (a file, or the home folder) in ``folder``
    (the home folder; default ``where``)."""
    folder = folder or where
    if kind == DISK_ERROR and _nearly_full(where):  # sqlite says "disk I/O error" when a write finds no space
        kind = FULL
    if kind == READ_ONLY:
        return (
            f"cannot write to {where}: its file system is read-only, or this user may not write there",
            f"make {folder} writable (remount it read-write, or fix its permissions), or point --home (config "
            "key home) at a writable folder, then rerun",
        )
    if kind == FULL:
        return (
            f"no space left on the disk that holds {where}",
            f"free disk space there (`df -h {folder}` shows what is left), then rerun",
        )
    if kind == DENIED:
        return (
            f"cannot open a file under {where}: permission denied",
            f"give this user read and write access to {folder}, or point --home (config key home) at a "
            "folder it may write, then rerun",
        )
    return (
        f"the disk that holds {where} reported an I/O error (often a full disk)",
        f"check the free space (`df -h {folder}`) and the disk, then rerun",
    )


def _nearly_full(where: str) -> bool:
    path = Path(where)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < 1 << 20
    except OSError:
        return False


def without_statement_dump(text: str) -> str:
    """An error's text without the SQL statement and parameters SQLAlchemy appends (they may hold data)."""
    head = text.split("\n[SQL: ", 1)[0]
    return "\n".join(
        line for line in head.splitlines() if not line.startswith("(Background on this error at:")
    ).strip()

"""What an extract's path is on disk, before anything opens it: a readable regular file, or why not.

A FIFO, a device or a socket is checked by its file type only (opening a FIFO would wait for a writer);
a regular file is opened once to learn whether this user may read it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

FILE_NOT_FOUND = "does not exist (file not found)"
FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@dataclass(frozen=True)
class FileState:
    """Size and modification time of a file: what changes while it is being written."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileState:
        info = path.stat()
        return cls(info.st_size, info.st_mtime_ns)


def file_kind(mode: int) -> str:
    return next((kind for test, kind in FILE_KINDS if test(mode)), "not a regular file")


def current_user() -> str:
    uid = os.geteuid()
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def unreadable_reason(path: Path) -> str:
    """Why this process may not read ``path``: who it runs as, and the file's owner and permissions."""
    try:
        info = path.stat()
    except OSError:
        return (
            f"cannot be reached: permission denied on one of its folders for {current_user()}, the user the "
            "pipeline runs as. Give that user search (x) permission on the folders, then rerun"
        )
    return (
        f"is not readable: permission denied for {current_user()}, the user the pipeline runs as (owner "
        f"uid {info.st_uid}, group gid {info.st_gid}, permissions {stat.filemode(info.st_mode)}). Give "
        "that user read permission (chmod/chown), then rerun; retrying cannot help"
    )


def file_problem(path: Path) -> str | None:
    """What is wrong with ``path`` as an extract, to follow its name ("is a FIFO (named pipe), not a
    file: ..."), or None for a regular file this process may read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return FILE_NOT_FOUND
    except PermissionError:
        return unreadable_reason(path)
    if not stat.S_ISREG(mode):
        return (
            f"is {file_kind(mode)}, not a file: an extract must be a regular file. Point the source at the "
            "exported file (a stream must be copied into a file first)"
        )
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return unreadable_reason(path)
    return None

"""Running a command as a user that file permissions apply to: root reads a mode-000 file regardless.

``unprivileged_prefix()`` is the command prefix to run as ``nobody`` (util-linux ``setpriv``, else
``runuser``) when the tests run as root, nothing otherwise; it skips the test, saying why, when root has
neither. ``shared_dir()`` is a fresh folder that user may use (pytest's tmp_path is private to root).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NOBODY_UID = NOBODY_GID = 65534


def unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        return ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    pytest.skip("running as root (mode 000 does not stop root) and neither setpriv nor runuser is installed")


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A new folder under the system's temp folder that any user may search and write, removed after."""
    path = Path(tempfile.mkdtemp(prefix="seg-unprivileged-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def child_env(home: Path) -> dict[str, str]:
    """The test's environment for the child, with a HOME the unprivileged user may write."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    env["HOME"] = str(home)
    return env

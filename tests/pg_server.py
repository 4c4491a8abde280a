"""A throwaway PostgreSQL server for a test session, from the binaries the `pgserver` wheel ships, so that the
suite needs nothing but Python: no system PostgreSQL, no port 5432, no password setup.

Glue, not pgserver's own server manager: that one listens on a Unix socket only, and the suite's outage
tests (tests/e2e/test_reliability.py) put a TCP proxy between the pipeline and the server. So the shipped
`initdb` and `pg_ctl` are run here directly, on 127.0.0.1 and a free port, in a temporary folder. PostgreSQL
refuses to run as root: under root they run as the unprivileged user pgserver creates for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SERVER_USER = "pgserver"  # the user pgserver itself runs its server as under root
# durability is not under test: a crash loses only a throwaway database
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_as() -> str | None:
    """The user the server runs as: this one, or pgserver's unprivileged user when this is root."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    # pgserver creates the user with `useradd`, which lives in /usr/sbin: not on a minimal PATH (env -i, cron)
    path = os.environ.get("PATH", "")
    missing = [d for d in ("/usr/sbin", "/sbin") if d not in path.split(os.pathsep)]
    if missing:
        os.environ["PATH"] = os.pathsep.join([path, *missing])
    ensure_user_exists(SERVER_USER)
    return SERVER_USER


def _binaries() -> Path:
    try:
        import pgserver
    except ImportError as missing:
        raise RuntimeError(
            "the tests need a PostgreSQL server: install the dev extras (`pip install -e '.[dev]'`, which "
            "ship one in the pgserver wheel) or set SEG_TEST_PG_URL to a server's admin URL"
        ) from missing
    binaries = Path(pgserver.__file__).parent / "pginstall" / "bin"  # where its wheel puts them
    if not (binaries / "initdb").exists():
        raise RuntimeError(f"pgserver {getattr(pgserver, '__version__', '')} ships no initdb in {binaries}")
    return binaries


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a fresh server; yield its admin URL (user postgres, trust login, database postgres); stop it and
    delete its files."""
    binaries, user = _binaries(), _run_as()
    folder = Path(tempfile.mkdtemp(prefix="seg-test-pg-"))
    data, log = folder / "data", folder / "server.log"
    if user is not None:
        shutil.chown(folder, user)
        folder.chmod(0o700)

    def run(*args: str) -> None:
        done = subprocess.run([str(binaries / args[0]), *args[1:]], user=user, capture_output=True, text=True)
        if done.returncode != 0:
            logged = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr}{logged}")

    port = _free_port()
    options = " ".join(
        ["-c listen_addresses=127.0.0.1", f"-p {port}", "-c unix_socket_directories=''"]
        + [f"-c {key}={value}" for key, value in SETTINGS.items()]
    )
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        run("pg_ctl", "start", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            run("pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

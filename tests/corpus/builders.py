"""Corpus cases too large (or impossible) to commit: cases.yaml names them with ``build: <function>``.

Each builder writes the case's input at ``path`` (in the test's tmp_path) and returns it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

TEN_MB = 10 * 1024 * 1024
ORDERS_HEADER = "order_id,customer_id,order_date,amount,channel\n"


def ten_mb_single_line(path: Path) -> Path:
    """10 MB without a line break: a dump with the wrong line endings, or not a CSV at all."""
    token = "order_id,customer_id,order_date,amount,channel;"
    path.write_text(token * (TEN_MB // len(token)), encoding="utf-8")
    return path


def ten_mb_field(path: Path) -> Path:
    """A good row, then a row whose amount is 10 MB of digits (a runaway export)."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write(ORDERS_HEADER + "KO1,K0000001,2024-06-01,10.5,web\n")
        fh.write("KO2,K0000002,2024-06-02," + "9" * TEN_MB + ",web\n")
    return path


def directory(path: Path) -> Path:
    """A folder where the extract should be (an unpacked archive, a mistyped path)."""
    path.mkdir()
    (path / "part-0000.csv").write_text(ORDERS_HEADER, encoding="utf-8")
    return path


def fifo(path: Path) -> Path:
    """A named pipe where the extract should be (an export streamed into the landing folder): opening it
    would wait for a writer, so it must be refused by its file type."""
    os.mkfifo(path)
    return path


def character_device(path: Path) -> Path:
    """A link to /dev/null: a character device reads as an empty stream, never as an extract."""
    path.symlink_to("/dev/null")
    return path


def unix_socket(path: Path) -> Path:
    """A Unix socket left where the extract should be (a transfer agent's)."""
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
    return path


BUILDERS = {
    f.__name__: f for f in (ten_mb_single_line, ten_mb_field, directory, fifo, character_device, unix_socket)
}

"""Atomic publishing: every table of a run is written as a new table and swapped in, all in one transaction.

Readers see either the whole previous publish or the whole new one, never a mix: a gate that fails
upstream means this code never runs, and an error or a crash while it runs rolls the transaction back,
so the last good tables stay as they were. Both stores follow the same steps:

1. create ``<table>__incoming`` with the contract's column types and load the frame into it;
2. drop the live table and rename the incoming one to its name;
3. commit (PostgreSQL: under an advisory lock, so two publishers queue instead of interleaving).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seg_pipeline.errors import SegPipelineError, first_line
from seg_pipeline.publish.contract import KINDS, TABLES, conform
from seg_pipeline.redact import redact

WAREHOUSE_SCHEMA = "published"
MONITORING_SCHEMA = "monitoring"
INCOMING = "__incoming"
# pg_advisory_xact_lock key: any fixed 64-bit number unique to this application ("segpipe" in ASCII)
PUBLISH_LOCK_KEY = 0x7365677069706501


class PublishUnavailable(SegPipelineError):
    """The PostgreSQL server could not be reached: worth retrying, unlike a contract breach."""


@dataclass(frozen=True)
class PublishedTable:
    """A table to publish into ``schema``: contract tables are checked and typed when made with ``of``;
    others (monitoring) keep their frame's types."""

    name: str
    frame: pd.DataFrame
    schema: str = WAREHOUSE_SCHEMA

    @classmethod
    def of(cls, name: str, frame: pd.DataFrame, schema: str = WAREHOUSE_SCHEMA) -> PublishedTable:
        return cls(name, conform(name, frame) if name in TABLES else frame.reset_index(drop=True), schema)

    @property
    def contracted(self) -> bool:
        return self.name in TABLES


def _quoted(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def _columns_ddl(table: PublishedTable, store: int) -> str | None:
    """``"col" TYPE NOT NULL, ...`` from the contract (store 1 = PostgreSQL, 2 = DuckDB); None = from frame."""
    if not table.contracted:
        return None
    return ", ".join(
        f"{_quoted(c.name)} {KINDS[c.kind][store]}{'' if c.nullable else ' NOT NULL'}"
        for c in TABLES[table.name]
    )


# --- the embedded warehouse (DuckDB) --------------------------------------------------------------------


def publish_to_warehouse(database: Path, tables: list[PublishedTable]) -> None:
    import duckdb

    from seg_pipeline.warehouse import wait_for_writes

    wait_for_writes()  # the tables being published, stored by the background writer
    with duckdb.connect(str(database)) as connection:
        for schema in dict.fromkeys(t.schema for t in tables):
            connection.execute(f"create schema if not exists {_quoted(schema)}")
        connection.execute("begin transaction")
        try:
            for table in tables:
                incoming = _quoted(table.schema, table.name + INCOMING)
                connection.register("seg_publish_frame", table.frame)
                columns = _columns_ddl(table, 2)
                connection.execute(f"drop table if exists {incoming}")
                if columns is None:
                    connection.execute(f"create table {incoming} as select * from seg_publish_frame")
                else:
                    connection.execute(f"create table {incoming} ({columns})")
                    connection.execute(f"insert into {incoming} by name select * from seg_publish_frame")
                connection.unregister("seg_publish_frame")
            for table in tables:
                connection.execute(f"drop table if exists {_quoted(table.schema, table.name)}")
                connection.execute(
                    f"alter table {_quoted(table.schema, table.name + INCOMING)} rename to {_quoted(table.name)}"
                )
            connection.execute("commit")
        except BaseException:
            connection.execute("rollback")
            raise


def read_warehouse_table(database: Path, table: str, schema: str = WAREHOUSE_SCHEMA) -> pd.DataFrame | None:
    """A published (or monitoring) table from the warehouse, or None when it was never published."""
    from seg_pipeline.warehouse import read_previous

    return read_previous(str(database), schema, table)


# --- PostgreSQL -----------------------------------------------------------------------------------------


def publish_to_postgres(
    dsn: str, tables: list[PublishedTable], schema: str, lock_wait_seconds: float
) -> None:
    """Stage and swap every table in one transaction, waiting up to ``lock_wait_seconds`` for another
    publisher (advisory lock) or for readers holding the live tables."""
    import psycopg

    contracted = [t for t in tables if t.contracted]
    try:
        connection = psycopg.connect(dsn, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise PublishUnavailable(
            f"PostgreSQL is not reachable for publishing at {_target(dsn)} ({first_line(exc)}); the published "
            "tables there are unchanged. Check SEG_PUBLISH_DSN (or publish.postgres_dsn) and that the server is up."
        ) from None
    except psycopg.Error as exc:  # a malformed DSN; libpq may quote parts of it, hence the masking
        raise SegPipelineError(
            f"the PostgreSQL DSN for publishing is not valid ({first_line(exc)}); nothing was published. "
            "Fix SEG_PUBLISH_DSN (or publish.postgres_dsn)."
        ) from None
    with connection:
        try:
            with connection.transaction():
                _take_publish_lock(connection, lock_wait_seconds)
                connection.execute(f"set local lock_timeout = '{int(lock_wait_seconds * 1000)}ms'")
                connection.execute(f"create schema if not exists {_quoted(schema)}")
                for table in contracted:
                    _stage_postgres(connection, schema, table)
                for table in contracted:
                    live = _quoted(schema, table.name)
                    connection.execute(f"drop table if exists {live}")
                    connection.execute(
                        f"alter table {_quoted(schema, table.name + INCOMING)} rename to {_quoted(table.name)}"
                    )
        except psycopg.errors.LockNotAvailable:
            raise SegPipelineError(
                f"publishing to PostgreSQL waited {lock_wait_seconds:g} s for a lock on the published tables "
                "(another publish or a long-running reader); nothing was changed. Retry when it has finished, "
                "or raise publish.lock_wait_seconds."
            ) from None
        except psycopg.errors.DependentObjectsStillExist as exc:
            raise SegPipelineError(
                f"publishing to PostgreSQL: {first_line(exc)}. Published tables are replaced on every run, so "
                "views on them block the swap; read the tables directly or recreate views after each run. "
                "Nothing was changed."
            ) from None


def _take_publish_lock(connection, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while not connection.execute("select pg_try_advisory_xact_lock(%s)", [PUBLISH_LOCK_KEY]).fetchone()[0]:
        if time.monotonic() >= deadline:
            import psycopg

            raise psycopg.errors.LockNotAvailable("another publish holds the seg-pipeline publish lock")
        time.sleep(0.2)


def _stage_postgres(connection, schema: str, table: PublishedTable) -> None:
    frame = table.frame
    incoming = _quoted(schema, table.name + INCOMING)
    connection.execute(f"drop table if exists {incoming}")
    connection.execute(f"create table {incoming} ({_columns_ddl(table, 1)})")
    names = ", ".join(_quoted(c) for c in frame.columns)
    with connection.cursor().copy(f"copy {incoming} ({names}) from stdin") as copy:
        for row in _python_rows(frame):
            copy.write_row(row)


def _python_rows(frame: pd.DataFrame):
    """Rows of plain Python values (None for missing) that psycopg can adapt."""
    columns = []
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_datetime64_any_dtype(values):
            values = values.dt.date
        columns.append(values.astype(object).where(values.notna(), None).tolist())
    return zip(*columns, strict=True)


def read_postgres_table(dsn: str, schema: str, table: str) -> pd.DataFrame | None:
    import psycopg

    with psycopg.connect(dsn, connect_timeout=10) as connection:
        found = connection.execute(
            "select count(*) from information_schema.tables where table_schema = %s and table_name = %s",
            [schema, table],
        ).fetchone()[0]
        if not found:
            return None
        cursor = connection.execute(f"select * from {_quoted(schema, table)}")
        return pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])


def _target(dsn: str) -> str:
    """Where a DSN points, for messages: the URL with its password masked, or host/port/dbname of a
    key/value DSN."""
    if "://" in dsn:
        return redact(dsn.split("?", 1)[0])
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a malformed DSN: say so without quoting it
        return "(malformed DSN)"
    return (
        " ".join(f"{k}={parts[k]}" for k in ("host", "port", "dbname", "user") if parts.get(k)) or "(default)"
    )


def publish(
    warehouse: Path,
    tables: Mapping[str, pd.DataFrame],
    monitoring: Mapping[str, pd.DataFrame],
    postgres: tuple[str, str] | None,
    lock_wait_seconds: float,
) -> list[str]:
    """Publish to PostgreSQL (when configured) and the warehouse; returns where the tables went.

    Every frame is checked against the contract before either store is touched. PostgreSQL commits
    first: it is the store that can fail for outside reasons (network, locks), and when it does the
    warehouse is not touched either, so both keep the same last good publish. The monitoring tables
    (drift reference) swap in the warehouse's same transaction.
    """
    contract = [PublishedTable.of(name, frame) for name, frame in tables.items()]
    stores = []
    if postgres is not None:
        dsn, schema = postgres
        publish_to_postgres(dsn, contract, schema, lock_wait_seconds)
        stores.append(f"PostgreSQL schema {schema}")
    extra = [PublishedTable.of(name, frame, MONITORING_SCHEMA) for name, frame in monitoring.items()]
    publish_to_warehouse(warehouse, [*contract, *extra])
    stores.append(f"warehouse schema {WAREHOUSE_SCHEMA}")
    return stores

"""The two stores published tables live in, as plain database access (no Dagster): the warehouse's tables
read without writing (``query_table``, ``read_warehouse_table``), the published tables' shape (``PublishedTable``) and a
PostgreSQL connection that holds the publish lock (``PostgresStore``). publish/writers.py swaps tables in
with these, publish/pending.py resolves a publish a crash left open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from seg_pipeline.errors import SegPipelineError, first_line
from seg_pipeline.publish.contract import KINDS, TABLES, conform
from seg_pipeline.redact import redact

WAREHOUSE_SCHEMA = "published"
MONITORING_SCHEMA = "monitoring"
INCOMING = "__incoming"
PREVIOUS = "__previous"  # PostgreSQL's live tables while a two-store publish is open
# pg_advisory_lock key: any fixed 64-bit number unique to this application ("segpipe" in ASCII)
PUBLISH_LOCK_KEY = 0x7365677069706501


class PublishUnavailable(SegPipelineError):
    """The PostgreSQL server could not be reached: worth retrying, unlike a contract breach."""


@dataclass(frozen=True)
class Appended:
    """Rows to add to a monitoring table that keeps every publish's rows (score history, outcomes): live rows
    whose ``replaces`` value occurs in ``frame`` are replaced (a retried publish of the same run), the others
    stay. Swapped in the same transaction as the rest of the publish."""

    frame: pd.DataFrame
    replaces: str
    types: Mapping[str, str]  # column -> DuckDB type: the table outlives any one frame's dtypes


@dataclass(frozen=True)
class PublishedTable:
    """A table to publish into ``schema``: contract tables are checked and typed when made with ``of``;
    others (monitoring) keep their frame's types. ``replaces`` set: appended (``Appended``), not swapped."""

    name: str
    frame: pd.DataFrame
    schema: str = WAREHOUSE_SCHEMA
    replaces: str | None = None
    types: Mapping[str, str] | None = None

    @classmethod
    def of(cls, name: str, frame: pd.DataFrame | Appended, schema: str = WAREHOUSE_SCHEMA) -> PublishedTable:
        if isinstance(frame, Appended):
            return cls(name, frame.frame[list(frame.types)].reset_index(drop=True), schema, frame.replaces,
                       frame.types)  # fmt: skip
        return cls(name, conform(name, frame) if name in TABLES else frame.reset_index(drop=True), schema)

    @property
    def contracted(self) -> bool:
        return self.name in TABLES


def quoted(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def columns_ddl(table: PublishedTable, store: int) -> str | None:
    """``"col" TYPE NOT NULL, ...`` from the contract (store 1 = PostgreSQL, 2 = DuckDB); None = from frame."""
    if table.types is not None:
        return ", ".join(f"{quoted(name)} {kind}" for name, kind in table.types.items())
    if not table.contracted:
        return None
    return ", ".join(
        f"{quoted(c.name)} {KINDS[c.kind][store]}{'' if c.nullable else ' NOT NULL'}"
        for c in TABLES[table.name]
    )


def in_transaction(connection, work: Callable[[], object]) -> None:
    connection.execute("begin transaction")
    try:
        work()
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


def warehouse_tables(connection) -> set[tuple[str, str]]:
    rows = connection.execute("select table_schema, table_name from information_schema.tables").fetchall()
    return {(schema, name) for schema, name in rows}


# --- reading the warehouse (read-only connections) ----------------------------------------------------------


def fetch_frame(result) -> pd.DataFrame:
    """A DuckDB query result as pandas, through Arrow: the same dtypes as ``fetchdf()``, twice as fast, and
    each repeated string (a customer key on every event, an event type) is one Python object, not one per
    row, which cuts the memory of event tables about threefold."""
    import pyarrow as pa

    table = result.to_arrow_table()
    frame = table.to_pandas()
    for column in table.schema:  # where Arrow's conversion differs from fetchdf's, follow fetchdf
        if pa.types.is_boolean(column.type) and frame[column.name].dtype == object:
            frame[column.name] = frame[column.name].astype("boolean")  # booleans with missing values
        elif pa.types.is_date(column.type):
            frame[column.name] = pd.to_datetime(frame[column.name]).astype("datetime64[us]")
    return frame


def query_table(database: str | Path, schema: str, table: str, query: Callable[[str], str],
                frames: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame | None:  # fmt: skip
    """``query(quoted table name)`` on a read-only connection, ``frames`` registered as views; None when the
    warehouse or the table does not exist.

    Read-only, so it works where the warehouse cannot be written (a read-only home) and beside another process
    reading it. DuckDB refuses a read-only connection while this process holds a read-write one on the same
    file: callers inside a run go through the Warehouse resource (platform/warehouse.py), which first waits
    for its background writes."""
    import duckdb

    if not Path(database).exists():
        return None
    with duckdb.connect(str(database), read_only=True) as connection:
        found = connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
        if not found:
            return None
        for name, frame in (frames or {}).items():
            connection.register(name, frame)
        return fetch_frame(connection.execute(query(quoted(schema, table))))


def read_warehouse_table(
    database: str | Path, table: str, schema: str = WAREHOUSE_SCHEMA
) -> pd.DataFrame | None:
    """A whole table (by default a published one), or None when it does not exist."""
    return query_table(database, schema, table, lambda name: f"select * from {name}")


def read_rows(
    database: str | Path, schema: str, table: str, column: str, values: list
) -> pd.DataFrame | None:
    """The rows of ``table`` whose ``column`` is one of ``values``, filtered in DuckDB."""
    wanted = pd.DataFrame({"value": pd.Series(list(values), dtype="object")})
    return query_table(database, schema, table,
                       lambda name: f"select * from {name} where {quoted(column)} in (select value from wanted)",
                       {"wanted": wanted})  # fmt: skip


def distinct_values(database: str | Path, schema: str, table: str, column: str) -> pd.Series:
    """The distinct values of one column (empty when the table does not exist)."""
    found = query_table(database, schema, table, lambda name: f"select distinct {quoted(column)} from {name}")
    return pd.Series([], dtype="object") if found is None else found[column].astype("object")


def existing_tables(database: str | Path) -> set[str]:
    """Every "schema.table" in the warehouse (empty when the file does not exist yet)."""
    import duckdb

    if not Path(database).exists():
        return set()
    with duckdb.connect(str(database), read_only=True) as connection:
        return {f"{schema}.{name}" for schema, name in warehouse_tables(connection)}


# --- PostgreSQL -----------------------------------------------------------------------------------------


class PostgresStore:
    """One connection to the published schema, holding the publish lock (a session advisory lock, so it
    spans the publish's transactions; PostgreSQL releases it when the connection ends, however it ends).

    ``with PostgresStore(dsn, schema, wait) as store:`` waits up to ``wait`` seconds for another publisher.
    """

    def __init__(self, dsn: str, schema: str, lock_wait_seconds: float):
        self.dsn, self.schema, self.lock_wait_seconds = dsn, schema, lock_wait_seconds
        self.connection = None

    def __enter__(self) -> PostgresStore:
        self.connection = open_postgres(self.dsn, autocommit=True)
        try:
            self._take_publish_lock()
        except BaseException:
            self.connection.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.connection.close()

    def _take_publish_lock(self) -> None:
        deadline = time.monotonic() + self.lock_wait_seconds
        take = "select pg_try_advisory_lock(%s)"
        while not self.connection.execute(take, [PUBLISH_LOCK_KEY]).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise SegPipelineError(
                    f"publishing to PostgreSQL waited {self.lock_wait_seconds:g} s for a lock on the published "
                    "tables (another publish or a long-running reader); nothing was changed. Retry when it has "
                    "finished, or raise publish.lock_wait_seconds."
                )
            time.sleep(0.2)

    def tables(self) -> set[str]:
        rows = self.connection.execute(
            "select table_name from information_schema.tables where table_schema = %s", [self.schema]
        )
        return {name for (name,) in rows}

    def run_id(self, table: str = "churn_scores") -> str | None:
        """The run the live ``table`` comes from (None when it does not exist or is empty)."""
        if table not in self.tables():
            return None
        row = self.connection.execute(f"select run_id from {quoted(self.schema, table)} limit 1").fetchone()
        return row[0] if row else None

    def stage(self, tables: list[PublishedTable]) -> None:
        with self.connection.transaction():
            self.connection.execute(f"create schema if not exists {quoted(self.schema)}")
            for table in tables:
                self._load(table)

    def swap(self, tables: list[PublishedTable]) -> None:
        """Staged tables become live; the live ones are kept as ``__previous`` until ``drop_previous``."""
        import psycopg

        live = self.tables()
        try:
            with self.connection.transaction():
                wait_ms = int(self.lock_wait_seconds * 1000)
                self.connection.execute(f"set local lock_timeout = '{wait_ms}ms'")
                for table in tables:
                    if table.name in live:
                        self._refuse_dependent_views(table.name)
                        self.connection.execute(
                            f"drop table if exists {quoted(self.schema, table.name + PREVIOUS)}"
                        )
                        self._rename(table.name, table.name + PREVIOUS)
                    self._rename(table.name + INCOMING, table.name)
        except psycopg.errors.LockNotAvailable:
            raise SegPipelineError(
                f"publishing to PostgreSQL waited {self.lock_wait_seconds:g} s for a lock on the published tables "
                "(a long-running reader); nothing was changed. Retry when it has finished, or raise "
                "publish.lock_wait_seconds."
            ) from None

    def restore_previous(self, names: list[str], replaced: list[str]) -> None:
        """Undo ``swap``: the tables it replaced come back, the ones it created go; in one transaction."""
        present = self.tables()
        with self.connection.transaction():
            for name in names:
                if name + PREVIOUS in present:
                    self.connection.execute(f"drop table if exists {quoted(self.schema, name)}")
                    self._rename(name + PREVIOUS, name)
                elif name not in replaced:  # the first publish: there was nothing before it
                    self.connection.execute(f"drop table if exists {quoted(self.schema, name)}")
                self.connection.execute(f"drop table if exists {quoted(self.schema, name + INCOMING)}")

    def drop_leftovers(self, names: list[str], suffix: str) -> None:
        with self.connection.transaction():
            for name in names:
                self.connection.execute(f"drop table if exists {quoted(self.schema, name + suffix)}")

    def _rename(self, old: str, new: str) -> None:
        self.connection.execute(f"alter table {quoted(self.schema, old)} rename to {quoted(new)}")

    def _refuse_dependent_views(self, name: str) -> None:
        # a view follows a renamed table, so a view on a live table would silently go on showing the
        # previous publish: refuse, as dropping the table would (a view is a consumer's object, not ours)
        views = self.connection.execute(
            "select distinct view.relname from pg_depend d join pg_rewrite r on r.oid = d.objid "
            "join pg_class view on view.oid = r.ev_class "
            "where d.classid = 'pg_rewrite'::regclass and d.refobjid = %s::regclass and view.oid <> d.refobjid",
            [quoted(self.schema, name)],
        ).fetchall()
        if views:
            raise SegPipelineError(
                f"publishing to PostgreSQL: {', '.join(v for (v,) in views)} depends on {self.schema}.{name}. "
                "Published tables are replaced on every run, so views on them block the swap; read the tables "
                "directly or recreate views after each run. Nothing was changed."
            )

    def _load(self, table: PublishedTable) -> None:
        frame = table.frame
        incoming = quoted(self.schema, table.name + INCOMING)
        self.connection.execute(f"drop table if exists {incoming}")
        self.connection.execute(f"create table {incoming} ({columns_ddl(table, 1)})")
        names = ", ".join(quoted(c) for c in frame.columns)
        with self.connection.cursor().copy(f"copy {incoming} ({names}) from stdin") as copy:
            for row in _python_rows(frame):
                copy.write_row(row)


def open_postgres(dsn: str, autocommit: bool = False):
    """A psycopg connection, or an error that says what is wrong without quoting a password."""
    import psycopg

    try:
        return psycopg.connect(dsn, connect_timeout=10, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise PublishUnavailable(
            f"PostgreSQL is not reachable for publishing at {postgres_target(dsn)} ({first_line(exc)}); the published "
            "tables there are unchanged. Check SEG_PUBLISH_DSN (or publish.postgres_dsn) and that the server is up."
        ) from None
    except psycopg.Error as exc:  # a malformed DSN; libpq may quote parts of it, hence the masking
        raise SegPipelineError(
            f"the PostgreSQL DSN for publishing is not valid ({first_line(exc)}); nothing was published. "
            "Fix SEG_PUBLISH_DSN (or publish.postgres_dsn)."
        ) from None


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
        cursor = connection.execute(f"select * from {quoted(schema, table)}")
        return pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])


def postgres_target(dsn: str) -> str:
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

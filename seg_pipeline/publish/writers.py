"""Atomic publishing to each store, and a two-store publish that a crash cannot leave half done.

Readers of a store see either its whole previous publish or the whole new one, never a mix. Within a
store the steps are: load every table into ``<table>__incoming``, then drop (or keep) the live table and
rename the incoming one to its name, and commit.

With PostgreSQL configured the tables go to two stores, which share no transaction (PostgreSQL's
two-phase commit is off by default and DuckDB has none). So the publish is prepared in both before
either changes, commits in a fixed order and is recorded while it is open (publish/pending.py):

1. stage: both stores hold the new tables as committed ``__incoming`` tables; nothing readers see changed;
2. record the pending publish in a marker file beside the warehouse;
3. PostgreSQL swaps (its live tables are kept as ``__previous``) and commits;
4. the warehouse swaps and commits: this is the publish's commit point;
5. PostgreSQL's ``__previous`` tables are dropped and the marker is removed.

An error in 4 puts PostgreSQL's previous tables back at once. If that fails too, or the process dies
between 3 and 4, the marker stays: the next publish, the next `seg-pipeline run` and `seg-pipeline
status` roll PostgreSQL back (or, when the warehouse had committed, finish the cleanup), and until then
the failure message, `status` and the ``stores_agree`` check say the stores disagree.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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


class StoresDisagree(SegPipelineError):
    """A publish failed between the two commits and could not be undone: the stores hold different runs."""


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


@dataclass
class PublishResult:
    stores: list[str]
    # what the publish found left by an earlier one and did about it (pending.Resolution.message)
    resolved_earlier: str | None = None
    run_ids: dict[str, str | None] = field(default_factory=dict)  # store -> the run its live tables are from


def _quoted(*parts: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def _columns_ddl(table: PublishedTable, store: int) -> str | None:
    """``"col" TYPE NOT NULL, ...`` from the contract (store 1 = PostgreSQL, 2 = DuckDB); None = from frame."""
    if table.types is not None:
        return ", ".join(f"{_quoted(name)} {kind}" for name, kind in table.types.items())
    if not table.contracted:
        return None
    return ", ".join(
        f"{_quoted(c.name)} {KINDS[c.kind][store]}{'' if c.nullable else ' NOT NULL'}"
        for c in TABLES[table.name]
    )


# --- the embedded warehouse (DuckDB) --------------------------------------------------------------------


def publish_to_warehouse(database: Path, tables: list[PublishedTable], erase_keys: list[str] = ()) -> None:
    """Stage and swap every table in one transaction (the warehouse as the only store)."""
    import duckdb

    from seg_pipeline.warehouse import wait_for_writes

    wait_for_writes()  # the tables being published, stored by the background writer
    with duckdb.connect(str(database)) as connection:
        _in_transaction(
            connection,
            lambda: (_load_incoming(connection, tables), _swap_in(connection, tables, erase_keys)),
        )


def _in_transaction(connection, work: Callable[[], object]) -> None:
    connection.execute("begin transaction")
    try:
        work()
        connection.execute("commit")
    except BaseException:
        connection.execute("rollback")
        raise


def _load_incoming(connection, tables: list[PublishedTable]) -> None:
    for schema in dict.fromkeys(t.schema for t in tables):
        connection.execute(f"create schema if not exists {_quoted(schema)}")
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


def _swap_in(connection, tables: list[PublishedTable], erase_keys: list[str] = ()) -> None:
    """Incoming tables become live; appended ones add their rows. Then rows of erased customers
    (``erase_keys``) leave every appended table with a customer_key."""
    live = warehouse_tables(connection)
    for table in tables:
        target, incoming = _quoted(table.schema, table.name), _quoted(table.schema, table.name + INCOMING)
        if table.replaces is not None and (table.schema, table.name) in live:
            column = _quoted(table.replaces)
            connection.execute(f"delete from {target} where {column} in (select {column} from {incoming})")
            connection.execute(f"insert into {target} by name select * from {incoming}")
            connection.execute(f"drop table {incoming}")
            continue
        connection.execute(f"drop table if exists {target}")
        connection.execute(f"alter table {incoming} rename to {_quoted(table.name)}")
    forgetting = [t for t in tables if t.replaces is not None and "customer_key" in t.frame.columns]
    if erase_keys and forgetting:
        connection.register("seg_erased_keys", pd.DataFrame({"customer_key": list(erase_keys)}))
        for table in forgetting:
            connection.execute(f"delete from {_quoted(table.schema, table.name)} "
                               "where customer_key in (select customer_key from seg_erased_keys)")  # fmt: skip
        connection.unregister("seg_erased_keys")


def warehouse_tables(connection) -> set[tuple[str, str]]:
    rows = connection.execute("select table_schema, table_name from information_schema.tables").fetchall()
    return {(schema, name) for schema, name in rows}


def _warehouse_run_id(connection, table: str = "churn_scores") -> str | None:
    if (WAREHOUSE_SCHEMA, table) not in warehouse_tables(connection):
        return None
    row = connection.execute(f"select run_id from {_quoted(WAREHOUSE_SCHEMA, table)} limit 1").fetchone()
    return row[0] if row else None


def read_warehouse_table(database: Path, table: str, schema: str = WAREHOUSE_SCHEMA) -> pd.DataFrame | None:
    """A published (or monitoring) table from the warehouse, or None when it was never published."""
    from seg_pipeline.warehouse import read_previous

    return read_previous(str(database), schema, table)


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
        row = self.connection.execute(f"select run_id from {_quoted(self.schema, table)} limit 1").fetchone()
        return row[0] if row else None

    def stage(self, tables: list[PublishedTable]) -> None:
        with self.connection.transaction():
            self.connection.execute(f"create schema if not exists {_quoted(self.schema)}")
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
                            f"drop table if exists {_quoted(self.schema, table.name + PREVIOUS)}"
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
                    self.connection.execute(f"drop table if exists {_quoted(self.schema, name)}")
                    self._rename(name + PREVIOUS, name)
                elif name not in replaced:  # the first publish: there was nothing before it
                    self.connection.execute(f"drop table if exists {_quoted(self.schema, name)}")
                self.connection.execute(f"drop table if exists {_quoted(self.schema, name + INCOMING)}")

    def drop_leftovers(self, names: list[str], suffix: str) -> None:
        with self.connection.transaction():
            for name in names:
                self.connection.execute(f"drop table if exists {_quoted(self.schema, name + suffix)}")

    def _rename(self, old: str, new: str) -> None:
        self.connection.execute(f"alter table {_quoted(self.schema, old)} rename to {_quoted(new)}")

    def _refuse_dependent_views(self, name: str) -> None:
        # a view follows a renamed table, so a view on a live table would silently go on showing the
        # previous publish: refuse, as dropping the table would (a view is a consumer's object, not ours)
        views = self.connection.execute(
            "select distinct view.relname from pg_depend d join pg_rewrite r on r.oid = d.objid "
            "join pg_class view on view.oid = r.ev_class "
            "where d.classid = 'pg_rewrite'::regclass and d.refobjid = %s::regclass and view.oid <> d.refobjid",
            [_quoted(self.schema, name)],
        ).fetchall()
        if views:
            raise SegPipelineError(
                f"publishing to PostgreSQL: {', '.join(v for (v,) in views)} depends on {self.schema}.{name}. "
                "Published tables are replaced on every run, so views on them block the swap; read the tables "
                "directly or recreate views after each run. Nothing was changed."
            )

    def _load(self, table: PublishedTable) -> None:
        frame = table.frame
        incoming = _quoted(self.schema, table.name + INCOMING)
        self.connection.execute(f"drop table if exists {incoming}")
        self.connection.execute(f"create table {incoming} ({_columns_ddl(table, 1)})")
        names = ", ".join(_quoted(c) for c in frame.columns)
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
            f"PostgreSQL is not reachable for publishing at {_target(dsn)} ({first_line(exc)}); the published "
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


def live_run_ids(warehouse: Path, postgres: tuple[str, str] | None) -> dict[str, str | None]:
    """store -> the run its live published tables come from (None: nothing published there)."""
    import duckdb

    with duckdb.connect(
        str(warehouse)
    ) as connection:  # as the publish opened it: one configuration per process
        found = {"warehouse": _warehouse_run_id(connection)}
    if postgres is not None:
        with open_postgres(postgres[0]) as connection:
            schema = postgres[1]
            exists = connection.execute(
                "select count(*) from information_schema.tables where table_schema = %s and table_name = %s",
                [schema, "churn_scores"],
            ).fetchone()[0]
            row = (
                connection.execute(f"select run_id from {_quoted(schema, 'churn_scores')} limit 1").fetchone()
                if exists
                else None
            )
            found["postgres"] = row[0] if row else None
    return found


# --- both stores ----------------------------------------------------------------------------------------

# Called with "postgres_committed" and "warehouse_committed" as the publish passes each commit: the seam
# where tests inject a crash or an error between the two commits (production passes nothing).
PhaseHook = Callable[[str], None]


def publish(
    warehouse: Path,
    tables: Mapping[str, pd.DataFrame],
    monitoring: Mapping[str, pd.DataFrame],
    postgres: tuple[str, str] | None,
    lock_wait_seconds: float,
    run_id: str = "",
    on_phase: PhaseHook | None = None,
    erase_keys: list[str] = (),
) -> PublishResult:
    """Publish to PostgreSQL (when configured) and the warehouse, as the module docstring describes.

    Every frame is checked against the contract before either store is touched. A pending publish left by
    an earlier run is resolved first. The monitoring tables (drift reference, score history, outcomes) go to
    the warehouse only; ``Appended`` ones keep earlier runs' rows, except those of ``erase_keys``.
    """
    from seg_pipeline.publish import pending

    contract = [PublishedTable.of(name, frame) for name, frame in tables.items()]
    extra = [PublishedTable.of(name, frame, MONITORING_SCHEMA) for name, frame in monitoring.items()]
    in_warehouse = [*contract, *extra]
    with pending.publish_lock(warehouse):
        earlier = pending.resolve_locked(warehouse, postgres, lock_wait_seconds)
        if earlier is not None and earlier.unresolved:
            raise StoresDisagree(earlier.message)
        if postgres is None:
            publish_to_warehouse(warehouse, in_warehouse, erase_keys)
            stores = [f"warehouse schema {WAREHOUSE_SCHEMA}"]
        else:
            _publish_to_both(warehouse, contract, in_warehouse, postgres, lock_wait_seconds, run_id, on_phase,
                             erase_keys)  # fmt: skip
            stores = [f"PostgreSQL schema {postgres[1]}", f"warehouse schema {WAREHOUSE_SCHEMA}"]
    return PublishResult(stores, earlier.message if earlier else None)


def _publish_to_both(
    warehouse, contract, in_warehouse, postgres, lock_wait_seconds, run_id, on_phase, erase_keys
) -> None:
    import duckdb

    from seg_pipeline.publish import pending
    from seg_pipeline.warehouse import wait_for_writes

    dsn, schema = postgres
    names = [t.name for t in contract]
    hook = on_phase or (lambda phase: None)
    wait_for_writes()  # the tables being published, stored by the background writer
    with PostgresStore(dsn, schema, lock_wait_seconds) as store, duckdb.connect(str(warehouse)) as connection:
        replaced = sorted(store.tables() & set(names))
        marker = pending.Marker(
            run_id=run_id, postgres_schema=schema, postgres_target=_target(dsn), postgres_tables=names,
            postgres_replaced=replaced, warehouse_tables=[[t.schema, t.name] for t in in_warehouse],
            previous_run=store.run_id(), warehouse_run=_warehouse_run_id(connection),
        )  # fmt: skip
        try:  # 1. stage in both, 2. record: nothing live changed yet, so an error here just cleans up
            store.stage(contract)
            _in_transaction(connection, lambda: _load_incoming(connection, in_warehouse))
            pending.write_marker(warehouse, marker)
        except BaseException:
            _drop_staged(store, names, connection, in_warehouse)
            raise
        try:
            store.swap(contract)  # 3.
        except BaseException:
            _drop_staged(store, names, connection, in_warehouse)
            pending.remove_marker(warehouse)
            raise
        try:
            pending.write_marker(warehouse, marker.advanced("postgres_committed"))
            hook("postgres_committed")
            _in_transaction(connection, lambda: _swap_in(connection, in_warehouse, erase_keys))  # 4.
        except BaseException as exc:
            undone = _undo_postgres(warehouse, store, marker, exc)
            if undone is exc:
                raise
            raise undone from exc
        hook("warehouse_committed")
        with contextlib.suppress(Exception):  # 5. a leftover __previous table is dropped by the next swap
            store.drop_leftovers(names, PREVIOUS)
        pending.remove_marker(warehouse)


def _drop_staged(store: PostgresStore, names: list[str], connection, in_warehouse) -> None:
    with contextlib.suppress(Exception):  # best effort: a later publish drops leftovers before staging
        store.drop_leftovers(names, INCOMING)
    with contextlib.suppress(Exception):
        _in_transaction(connection, lambda: [
            connection.execute(f"drop table if exists {_quoted(t.schema, t.name + INCOMING)}") for t in in_warehouse
        ])  # fmt: skip


def _undo_postgres(warehouse: Path, store: PostgresStore, marker, cause: BaseException) -> BaseException:
    """The warehouse did not commit: put PostgreSQL's previous tables back, and say what the stores hold."""
    from seg_pipeline.publish import pending

    why = first_line(cause)
    try:
        store.restore_previous(marker.postgres_tables, marker.postgres_replaced)
    except Exception as exc:  # noqa: BLE001 - the marker stays; the next run or `status` rolls back
        return StoresDisagree(
            f"the stores DISAGREE: PostgreSQL schema {marker.postgres_schema} holds this run's tables "
            f"({marker.run_id}), the warehouse those of run {marker.warehouse_run or '(none)'}. The warehouse "
            f"could not take the new tables ({why}) and putting PostgreSQL's previous tables back failed too "
            f"({first_line(exc)}). The pending publish is recorded in {pending.marker_path(warehouse)}: the "
            "next `seg-pipeline run` or `seg-pipeline status` puts PostgreSQL back once it is reachable.",
            hint="fix the cause above, then run `seg-pipeline status` to bring the stores back together",
        )
    if isinstance(cause, Exception):  # a KeyboardInterrupt stays itself, after the rollback
        pending.remove_marker(warehouse)
        return SegPipelineError(
            f"publishing to the warehouse failed ({why}) after PostgreSQL had committed; PostgreSQL's previous "
            "tables were put back, so both stores keep the last good publish and nothing was published. "
            "Fix the cause and rerun."
        )
    pending.remove_marker(warehouse)
    return cause

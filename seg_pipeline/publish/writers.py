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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from seg_pipeline.errors import SegPipelineError, first_line
from seg_pipeline.publish.stores import (
    INCOMING,
    MONITORING_SCHEMA,
    PREVIOUS,
    WAREHOUSE_SCHEMA,
    PostgresStore,
    PublishedTable,
    columns_ddl,
    in_transaction,
    open_postgres,
    postgres_target,
    quoted,
    warehouse_tables,
)


class StoresDisagree(SegPipelineError):
    """A publish failed between the two commits and could not be undone: the stores hold different runs."""


@dataclass
class PublishResult:
    stores: list[str]
    # what the publish found left by an earlier one and did about it (pending.Resolution.message)
    resolved_earlier: str | None = None
    run_ids: dict[str, str | None] = field(default_factory=dict)  # store -> the run its live tables are from


# --- the embedded warehouse (DuckDB) --------------------------------------------------------------------


def publish_to_warehouse(database: Path, tables: list[PublishedTable], erase_keys: list[str] = ()) -> None:
    """Stage and swap every table in one transaction (the warehouse as the only store)."""
    import duckdb

    with duckdb.connect(str(database)) as connection:
        in_transaction(
            connection,
            lambda: (_load_incoming(connection, tables), _swap_in(connection, tables, erase_keys)),
        )


def _load_incoming(connection, tables: list[PublishedTable]) -> None:
    for schema in dict.fromkeys(t.schema for t in tables):
        connection.execute(f"create schema if not exists {quoted(schema)}")
    for table in tables:
        incoming = quoted(table.schema, table.name + INCOMING)
        connection.register("seg_publish_frame", table.frame)
        columns = columns_ddl(table, 2)
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
        target, incoming = quoted(table.schema, table.name), quoted(table.schema, table.name + INCOMING)
        if table.replaces is not None and (table.schema, table.name) in live:
            column = quoted(table.replaces)
            connection.execute(f"delete from {target} where {column} in (select {column} from {incoming})")
            connection.execute(f"insert into {target} by name select * from {incoming}")
            connection.execute(f"drop table {incoming}")
            continue
        connection.execute(f"drop table if exists {target}")
        connection.execute(f"alter table {incoming} rename to {quoted(table.name)}")
    forgetting = [t for t in tables if t.replaces is not None and "customer_key" in t.frame.columns]
    if erase_keys and forgetting:
        connection.register("seg_erased_keys", pd.DataFrame({"customer_key": list(erase_keys)}))
        for table in forgetting:
            connection.execute(f"delete from {quoted(table.schema, table.name)} "
                               "where customer_key in (select customer_key from seg_erased_keys)")  # fmt: skip
        connection.unregister("seg_erased_keys")


def _warehouse_run_id(connection, table: str = "churn_scores") -> str | None:
    if (WAREHOUSE_SCHEMA, table) not in warehouse_tables(connection):
        return None
    row = connection.execute(f"select run_id from {quoted(WAREHOUSE_SCHEMA, table)} limit 1").fetchone()
    return row[0] if row else None


# --- PostgreSQL -----------------------------------------------------------------------------------------


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
                connection.execute(f"select run_id from {quoted(schema, 'churn_scores')} limit 1").fetchone()
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

    dsn, schema = postgres
    names = [t.name for t in contract]
    hook = on_phase or (lambda phase: None)
    with PostgresStore(dsn, schema, lock_wait_seconds) as store, duckdb.connect(str(warehouse)) as connection:
        replaced = sorted(store.tables() & set(names))
        marker = pending.Marker(
            run_id=run_id, postgres_schema=schema, postgres_target=postgres_target(dsn), postgres_tables=names,
            postgres_replaced=replaced, warehouse_tables=[[t.schema, t.name] for t in in_warehouse],
            previous_run=store.run_id(), warehouse_run=_warehouse_run_id(connection),
        )  # fmt: skip
        try:  # 1. stage in both, 2. record: nothing live changed yet, so an error here just cleans up
            store.stage(contract)
            in_transaction(connection, lambda: _load_incoming(connection, in_warehouse))
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
            in_transaction(connection, lambda: _swap_in(connection, in_warehouse, erase_keys))  # 4.
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
        in_transaction(connection, lambda: [
            connection.execute(f"drop table if exists {quoted(t.schema, t.name + INCOMING)}") for t in in_warehouse
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

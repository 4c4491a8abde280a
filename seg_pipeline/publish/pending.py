"""The record of an open two-store publish, and how a later process resolves one left behind.

writers.publish writes the marker once both stores hold the new tables staged and before PostgreSQL
swaps, and removes it when the warehouse (the last store) has committed. A marker found later means the
publishing process stopped in between: killed, out of disk, or both stores failed it. Resolving it:

- the warehouse had committed: the publish is complete; only PostgreSQL's ``__previous`` tables are left
  to drop (finished);
- PostgreSQL had committed, the warehouse not: PostgreSQL's previous tables are put back (rolled back), so
  a failed run never replaces the last good publish in one store only;
- neither had: the staged tables are dropped (cleared).

A file lock beside the warehouse is held for the whole of a publish and of a resolution, so `status` never
resolves a publish that is still going; the kernel releases it when its process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from seg_pipeline.errors import SegPipelineError, first_line


@dataclass(frozen=True)
class Marker:
    run_id: str
    postgres_schema: str
    postgres_target: str  # host/port/database, password masked: for messages only
    postgres_tables: list[str]
    postgres_replaced: list[str]  # of those, the ones that existed before (to put back)
    warehouse_tables: list[list[str]]  # [schema, table]
    previous_run: str | None  # the run PostgreSQL's live tables came from before the publish
    warehouse_run: str | None  # the run the warehouse's live tables came from before the publish
    phase: str = "staged"  # staged -> postgres_committed
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))

    def advanced(self, phase: str) -> Marker:
        return replace(self, phase=phase)


@dataclass(frozen=True)
class Resolution:
    """What was found and done about a pending publish."""

    action: str  # finished | rolled_back | cleared | in_progress | unresolved
    message: str
    run_id: str

    @property
    def unresolved(self) -> bool:
        return self.action == "unresolved"


def marker_path(warehouse: Path) -> Path:
    return warehouse.with_name(warehouse.name + ".publish-pending.json")


def write_marker(warehouse: Path, marker: Marker) -> None:
    """Atomically (a complete file or the previous one) and durably, before anything it records happens."""
    path = marker_path(warehouse)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        json.dump(asdict(marker), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_marker(warehouse: Path) -> Marker | None:
    path = marker_path(warehouse)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SegPipelineError(
            f"the record of an unfinished publish {path} cannot be read ({first_line(exc)}); the published "
            "stores may disagree. Compare the run_id column of the published tables in both stores, then "
            "delete the file and rerun."
        ) from None
    return Marker(**data)


def remove_marker(warehouse: Path) -> None:
    marker_path(warehouse).unlink(missing_ok=True)


@contextlib.contextmanager
def publish_lock(warehouse: Path, blocking: bool = True) -> Iterator[bool]:
    """Held while publishing or resolving; yields False (and holds nothing) when not ``blocking`` and busy."""
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with warehouse.with_name(warehouse.name + ".publish.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve(warehouse: Path, postgres: tuple[str, str] | None, lock_wait_seconds: float) -> Resolution | None:
    """Resolve a publish left pending (None when there is none); for `seg-pipeline run` and `status`."""
    marker = read_marker(warehouse)
    if marker is None:
        return None
    with publish_lock(warehouse, blocking=False) as held:
        if not held:
            return Resolution(
                "in_progress", f"a publish of run {marker.run_id} is in progress", marker.run_id
            )
        return resolve_locked(warehouse, postgres, lock_wait_seconds)


def resolve_locked(
    warehouse: Path, postgres: tuple[str, str] | None, lock_wait_seconds: float
) -> Resolution | None:
    """``resolve`` for a caller holding the publish lock (the next publish)."""
    import duckdb

    from seg_pipeline.publish.stores import INCOMING, in_transaction, quoted, warehouse_tables

    marker = read_marker(warehouse)
    if marker is None:
        return None
    try:
        with duckdb.connect(str(warehouse)) as connection:
            first_schema, first_table = marker.warehouse_tables[0]
            if (first_schema, first_table + INCOMING) not in warehouse_tables(connection):
                return _finish(warehouse, postgres, lock_wait_seconds, marker)
            outcome = _roll_back_postgres(postgres, lock_wait_seconds, marker)
            if outcome.unresolved:
                return outcome
            in_transaction(connection, lambda: [
                connection.execute(f"drop table if exists {quoted(schema, name + INCOMING)}")
                for schema, name in marker.warehouse_tables
            ])  # fmt: skip
    except duckdb.Error as exc:
        return _unresolved(marker, f"the warehouse {warehouse} could not be opened ({first_line(exc)})")
    remove_marker(warehouse)
    return outcome


def _finish(warehouse: Path, postgres, lock_wait_seconds: float, marker: Marker) -> Resolution:
    from seg_pipeline.publish.stores import PREVIOUS, PostgresStore

    if postgres is not None and postgres[1] == marker.postgres_schema:
        # best effort: a leftover __previous table is dropped by the next swap anyway
        with contextlib.suppress(Exception), PostgresStore(*postgres, lock_wait_seconds) as store:
            store.drop_leftovers(marker.postgres_tables, PREVIOUS)
    remove_marker(warehouse)
    return Resolution(
        "finished",
        f"the publish of run {marker.run_id} (started {marker.started_at}) had committed in both stores "
        "when its process stopped; its cleanup was finished and both stores hold that run",
        marker.run_id,
    )


def _roll_back_postgres(postgres, lock_wait_seconds: float, marker: Marker) -> Resolution:
    from seg_pipeline.publish.stores import INCOMING, PostgresStore

    if postgres is None or postgres[1] != marker.postgres_schema:
        return _unresolved(
            marker,
            f"it published to PostgreSQL schema {marker.postgres_schema} at {marker.postgres_target}, which is "
            "not configured now; configure it again (SEG_PUBLISH_DSN or publish.postgres_dsn) so it can be "
            "put back",
        )
    try:
        with PostgresStore(*postgres, lock_wait_seconds) as store:
            swapped = marker.postgres_tables[0] + INCOMING not in store.tables()
            if swapped:
                store.restore_previous(marker.postgres_tables, marker.postgres_replaced)
            else:
                store.drop_leftovers(marker.postgres_tables, INCOMING)
    except Exception as exc:  # noqa: BLE001 - whatever stops it, the marker stays and the state is reported
        return _unresolved(marker, f"putting PostgreSQL back failed ({first_line(exc)})")
    if not swapped:
        return Resolution(
            "cleared",
            f"the publish of run {marker.run_id} (started {marker.started_at}) stopped before either store "
            "changed; its staged tables were dropped",
            marker.run_id,
        )
    return Resolution(
        "rolled_back",
        f"the publish of run {marker.run_id} (started {marker.started_at}) stopped after PostgreSQL had "
        f"committed and before the warehouse did; PostgreSQL schema {marker.postgres_schema} was put back to "
        f"the tables of run {marker.previous_run or '(none: the first publish)'}, so both stores hold the last "
        "good publish again",
        marker.run_id,
    )


def _unresolved(marker: Marker, why: str) -> Resolution:
    if marker.phase == "postgres_committed":
        state = (
            f"PostgreSQL schema {marker.postgres_schema} holds the tables of run {marker.run_id}, the "
            f"warehouse those of run {marker.warehouse_run or '(none)'}"
        )
    else:
        state = f"PostgreSQL schema {marker.postgres_schema} may hold the tables of run {marker.run_id}"
    return Resolution(
        "unresolved",
        f"the published stores DISAGREE: the publish of run {marker.run_id} (started {marker.started_at}) "
        f"stopped between its two commits: {state}. It cannot be resolved now: {why}. The next "
        "`seg-pipeline run` or `seg-pipeline status` tries again.",
        marker.run_id,
    )


# `status` does not wait long for another publisher's PostgreSQL lock: it reports and moves on
STATUS_LOCK_WAIT_SECONDS = 10.0


def resolve_configured(settings, lock_wait_seconds: float | None = None) -> Resolution | None:
    """``resolve`` for the stores ``settings`` configure (config.Settings)."""
    dsn = settings.publish_dsn
    wait = settings.publish.lock_wait_seconds if lock_wait_seconds is None else lock_wait_seconds
    return resolve(settings.warehouse_path, (dsn, settings.publish.postgres_schema) if dsn else None, wait)

"""The embedded DuckDB warehouse as a Dagster resource (``Warehouse``) and the IO manager that stores every
asset's table in it.

The ``Warehouse`` of a run owns everything that touches the warehouse file while the run executes:

- table writes: each whole-table output replaces its table in one statement, with the frame's own schema,
  empty or not, on a background thread while the next steps compute (in order, while the queued frames fit
  the memory budget, on one DuckDB thread: a second one slows the step computing beside it more than it
  speeds the write). A write that failed fails the next step that waits for it, naming the table;
- the handoff: a step of the same run that reads a table gets the frame in memory instead of reading it
  back, while the budget allows. The frame first gets the dtypes a read from DuckDB gives, so a step sees
  the same frame either way, and a full refresh and a rescore that reads last night's clean tables compute
  from identical inputs;
- reads of what earlier runs left (the last segmentation, the last publish, the score history), the facts
  each raw step records about the extract it read, and the publish swap (publish/writers.py). Every one of
  them waits for the background writes first.

Glue, not dagster-duckdb-pandas: its handler skips empty DataFrames (no table is created, so an absent
optional source breaks every reader downstream) and empties a table with DELETE before inserting by column
position (a changed schema fails or, worse, lands values in the wrong columns).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd

from seg_pipeline.features.catalogue import catalogue_entry
from seg_pipeline.publish.stores import (
    MONITORING_SCHEMA,
    WAREHOUSE_SCHEMA,
    distinct_values,
    fetch_frame,
    query_table,
    quoted,
    read_rows,
    read_warehouse_table,
)

SCHEMA_KEY = "schema"  # definition metadata of an asset: the warehouse schema its table goes to
COLUMNS_KEY = "columns"  # metadata of an asset input: load only these columns
COLUMN_SCHEMA = "dagster/column_schema"
EXTRACTS = ("raw", "extracts")  # one row per source: what its raw step read last (Warehouse.record_extract)
EXTRACT_COLUMNS = {"source": "varchar", "run_id": "varchar", "path": "varchar", "file_sha256": "varchar",
                   "exported_on": "date", "export_end": "timestamp", "columns_absent": "varchar"}  # fmt: skip
INGESTIONS = ("clean", "ingestions")  # one row per source: the fingerprint of its last clean step
INGESTION_COLUMNS = {"source": "varchar", "run_id": "varchar", "fingerprint": "varchar", "parts": "varchar"}
GATE_ROWS = (MONITORING_SCHEMA, "gate_rows")  # rows of each gated table whenever its gate passed
GATE_ROW_COLUMNS = {
    "table_name": "varchar",
    "run_id": "varchar",
    "rows": "bigint",
    "recorded_at": "timestamp",
}


# --- frames as the warehouse gives them back ------------------------------------------------------------


@dataclass
class ReadBack:
    """A frame as ``fetch_frame`` gives it once stored (``as_read_back``)."""

    frame: pd.DataFrame
    # columns only the stored table can tell: no value at all (their type is what DuckDB inferred), or
    # types whose round trip is not plain (categories, time zones, objects other than text)
    unknown: list[int]
    # columns that must be written with their own dtype, the converted one would be stored as another
    # type or turn missing values into NaN: the unknown ones and nullable numbers with gaps
    store_original: list[int]

    def to_store(self, original: pd.DataFrame) -> pd.DataFrame:
        """What to write: the converted columns (DuckDB scans plain object text faster than pandas'
        "string" dtype) and the original where the stored type would differ."""
        columns = {
            position: original.iloc[:, position].array if position in self.store_original else values
            for position, (_, values) in enumerate(self.frame.items())
        }
        frame = pd.DataFrame(columns, index=self.frame.index, copy=False)
        frame.columns = self.frame.columns
        return frame


def as_read_back(frame: pd.DataFrame) -> ReadBack:
    """``frame`` with the dtypes and missing values ``fetch_frame`` gives once it is stored.

    Text becomes object with None; nullable booleans, integers and floats become numpy's where nothing is
    missing, and with gaps integers and floats become float64 with NaN while booleans stay "boolean"; the
    index is 0..n-1. Every column is a new array, so the result shares no mutable state with ``frame``."""
    from pandas.api.extensions import ExtensionDtype

    masked_arrays = (pd.arrays.BooleanArray, pd.arrays.IntegerArray, pd.arrays.FloatingArray)
    columns, unknown, store_original = {}, [], []
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        dtype, present = column.dtype, column.notna()
        masked = isinstance(column.array, masked_arrays)
        if not present.any():
            unknown.append(position)
            columns[position] = column.to_numpy(dtype=object, na_value=None)  # replaced by the read-back
        elif isinstance(dtype, pd.StringDtype):
            columns[position] = column.to_numpy(dtype=object, na_value=None)
        elif masked:  # pandas' nullable Boolean, Int*, UInt*, Float*
            if present.all():
                columns[position] = column.to_numpy(dtype=dtype.numpy_dtype)
            elif isinstance(dtype, pd.BooleanDtype):
                columns[position] = column.array.copy()
            else:
                store_original.append(position)
                wide = "float64" if dtype.kind in "iu" else dtype.numpy_dtype
                columns[position] = column.to_numpy(dtype=wide, na_value=float("nan"))
        elif dtype.kind in "biufM" and not isinstance(dtype, ExtensionDtype):
            columns[position] = column.to_numpy(copy=True)
        elif pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(column[present]) == "string":
            store_original.append(position)  # DuckDB's reading of NaN or pd.NA in an object column
            columns[position] = column.where(present, None).to_numpy(dtype=object)
        else:
            unknown.append(position)
            columns[position] = column.to_numpy(dtype=object)
    result = pd.DataFrame(columns, index=pd.RangeIndex(len(frame)), copy=False)
    result.columns = frame.columns
    return ReadBack(result, unknown, sorted(set(unknown) | set(store_original)))


def _as_loaded(frame: pd.DataFrame, converted: ReadBack) -> pd.DataFrame:
    """The frame as a load from the warehouse would return it. The columns ``as_read_back`` cannot tell
    go through the same statement in an in-memory DuckDB (a table created from a frame gets the types
    the warehouse table got)."""
    import duckdb

    loaded = converted.frame
    if converted.unknown:
        with duckdb.connect() as memory:
            memory.register("seg_unknown", frame.iloc[:, converted.unknown].reset_index(drop=True))
            memory.execute("create table unknown_columns as select * from seg_unknown")
            stored = fetch_frame(memory.execute("select * from unknown_columns"))
        for offset, position in enumerate(converted.unknown):
            loaded.isetitem(position, stored.iloc[:, offset])
    return loaded


def as_loaded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as a later step reads it back from the warehouse (or from the handoff, which is the same)."""
    return _as_loaded(frame, as_read_back(frame))


def frame_bytes(frame: pd.DataFrame) -> int:
    """Memory of ``frame``, text columns estimated from up to 1,000 evenly spaced values (exact sizes
    would visit every string)."""
    total = int(frame.memory_usage(index=False, deep=False).sum())
    for position in range(frame.shape[1]):
        values = frame.iloc[:, position].to_numpy()
        if values.dtype == object and len(values):
            sample = values[:: max(1, len(values) // 1000)]
            total += int(sum(map(sys.getsizeof, sample)) / len(sample) * len(values))
    return total


# columns that many tables share; the features catalogue describes the features
KEY_COLUMNS = {
    "customer_key": "pseudonymous customer key (HMAC of the CRM id; the CRM id itself stays in the clean stage)",
    "as_of": "the date the run's features are computed as of",
    "run_id": "the Dagster run that wrote the row",
    "segment_id": "stable segment id",
    "segment_name": "readable segment name derived from the profile",
}


def column_description(name: str) -> str:
    feature = catalogue_entry(name)
    return KEY_COLUMNS.get(name) or (f"{feature.definition} (from {feature.source})" if feature else "")


def frame_schema(frame: pd.DataFrame) -> dg.TableSchema:
    """The Dagster column schema of a table as written: names, pandas types, and what the column is where the
    features catalogue or the shared key columns say it; the UI shows it on the asset's page."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(name), type=str(dtype), description=column_description(str(name)) or None)
            for name, dtype in frame.dtypes.items()
        ]
    )


# --- writing --------------------------------------------------------------------------------------------


class WarehouseWriteError(RuntimeError):
    """A table could not be stored; raised in the step that waited for the write."""


def _connect(database: str, threads: int | None = None):
    """A read-write connection, retried while another process holds the file for a moment."""
    import duckdb

    config = {"custom_user_agent": "seg-pipeline"} | ({"threads": threads} if threads else {})
    for attempt in range(10):
        try:
            return duckdb.connect(database, read_only=False, config=config)
        except (duckdb.IOException, RuntimeError):
            if attempt == 9:
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


def store_table(
    database: str, schema: str, table: str, frame: pd.DataFrame, threads: int | None = None
) -> None:
    """Replace ``schema.table`` with ``frame`` in one statement (the old table stays if it fails);
    ``threads``: DuckDB's, one for a background write so the other core stays with the steps."""
    connection = _connect(database, threads)
    try:
        connection.execute(f"create schema if not exists {quoted(schema)}")
        connection.register("seg_output_frame", frame)
        try:
            connection.execute(
                f"create or replace table {quoted(schema, table)} as select * from seg_output_frame"
            )
        finally:
            connection.unregister("seg_output_frame")
    finally:
        connection.close()


class _WriteBehind:
    """Warehouse writes on one background thread, in the order they were handed over, while the frames
    waiting to be written stay within a byte limit (beyond it, handing over waits for the oldest)."""

    def __init__(self):
        self._executor: ThreadPoolExecutor | None = None
        self._queued: list[tuple[str, int, Future]] = []  # (table, bytes, write), oldest first
        self._lock = threading.Lock()

    def submit(self, table: str, write: Callable[[], None], nbytes: int, limit_bytes: int) -> None:
        while self._queued and sum(q[1] for q in self._queued) + nbytes > limit_bytes:
            self._wait_oldest()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="warehouse-write")
            self._queued.append((table, nbytes, self._executor.submit(write)))

    def wait(self) -> None:
        """Until every queued write is stored; the first failure raised."""
        while True:
            with self._lock:
                if not self._queued:
                    return
            self._wait_oldest()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _wait_oldest(self) -> str:
        with self._lock:
            name, _, future = self._queued.pop(0)
        try:
            future.result()
        except Exception as exc:
            from seg_pipeline.errors import first_line

            raise WarehouseWriteError(
                f"storing table {name} in the warehouse failed: {first_line(exc)}"
            ) from exc
        return name


@dataclass
class _Kept:
    frame: pd.DataFrame
    readers_left: int
    nbytes: int


OutputId = tuple[str, str, str | None]  # (step key, output name, mapping key)


class Handoff:
    """Frames a run wrote, kept in memory for the steps of the same run that read them.

    Each frame is kept until its last reader in the run's plan has it (that reader gets the frame itself,
    earlier ones a copy, so no step sees another's changes), and only while all kept frames fit in
    ``budget_bytes``; whatever is not kept is read back from the warehouse as before.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._kept: dict[OutputId, _Kept] = {}

    @property
    def kept_bytes(self) -> int:
        return sum(k.nbytes for k in self._kept.values())

    def admits(self, nbytes: int) -> bool:
        """Whether a frame of ``nbytes`` fits in what the budget has left."""
        return self.kept_bytes + nbytes <= self.budget_bytes

    def keep(self, output: OutputId, frame: pd.DataFrame, nbytes: int, readers: int) -> None:
        self._kept[output] = _Kept(frame, readers, nbytes)

    def take(self, output: OutputId, columns: Sequence[str] | None) -> pd.DataFrame | None:
        """The kept frame (``columns`` of it) for one reader, or None."""
        kept = self._kept.get(output)
        if kept is None:
            return None
        kept.readers_left -= 1
        if kept.readers_left <= 0:
            del self._kept[output]
            return kept.frame[list(columns)] if columns else kept.frame
        return kept.frame[list(columns)] if columns else kept.frame.copy()


def _output_id(context: dg.OutputContext) -> OutputId:
    return (context.step_key, context.name, context.mapping_key)


def plan_readers(context: dg.OutputContext) -> dict[OutputId, int] | None:
    """How many inputs of the steps this run executes load each output (a retried step loads again; it then
    reads from the warehouse); None outside a run (a context built by hand).

    Dagster has no public API for the steps a run executes: this reads the step context's execution plan
    through attributes (no private import). Should a Dagster release change them, the handoff keeps nothing
    and every read goes to the warehouse: slower, never wrong."""
    try:
        steps = context.step_context.execution_plan.get_steps_to_execute_in_topo_order()
        readers: dict[OutputId, int] = {}
        for step in steps:
            for step_input in step.step_inputs:
                if step_input.dagster_type_key == "Nothing":  # an order-only dependency loads nothing
                    continue
                for upstream in step_input.get_step_output_handle_dependencies():
                    key = (upstream.step_key, upstream.output_name, upstream.mapping_key)
                    readers[key] = readers.get(key, 0) + 1
        return readers
    except (AttributeError, dg.DagsterInvariantViolationError):
        return None


# --- the resource ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractRecord:
    """What a raw step read for one source: the facts its gate and its clean stage judge the rows by."""

    source: str
    run_id: str
    path: str | None  # None: an optional source without an extract
    file_sha256: str
    exported_on: dt.date | None  # the extract's export date, when known (sources/window.py)
    export_end: dt.datetime  # rows after it are future rows
    columns_absent: tuple[str, ...] = ()

    @property
    def absent(self) -> bool:
        return self.path is None


@dataclass
class Warehouse:
    """The warehouse file for one run: background writes, the handoff, reads of earlier runs, the extract
    records of the raw steps and the publish swap (module docstring). Made by the ``warehouse`` resource
    (defs/resources.py) for each run; ``close`` waits for the last writes."""

    database: str
    handoff_memory_mb: int = 2048
    postgres_dsn: str | None = None
    postgres_schema: str = "seg_pipeline"
    lock_wait_seconds: float = 300.0
    _writes: _WriteBehind = field(default_factory=_WriteBehind, init=False, repr=False)
    _handoff: Handoff = field(init=False, repr=False)
    _readers: dict[OutputId, int] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._handoff = Handoff(self.handoff_memory_mb * 1024 * 1024)

    @property
    def path(self) -> Path:
        return Path(self.database)

    @property
    def postgres(self) -> tuple[str, str] | None:
        return (self.postgres_dsn, self.postgres_schema) if self.postgres_dsn else None

    # writes and the handoff

    def wait_for_writes(self) -> None:
        """Until every table handed to the background writer is stored (raises a failed write's error)."""
        self._writes.wait()

    def close(self) -> None:
        try:
            self.wait_for_writes()  # normally nothing is left: each write is waited for by a later step
        finally:
            self._writes.close()

    def store_output(self, context: dg.OutputContext, schema: str, table: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as ``schema.table``: in the background when a later step of the run reads it (which
        then gets it from the handoff, within the budget), else before the step ends."""
        converted = as_read_back(frame)
        stored = converted.to_store(frame)
        if self._readers is None:
            self._readers = plan_readers(context) or {}
        readers = self._readers.get(_output_id(context), 0)
        nbytes = frame_bytes(converted.frame)
        behind = bool(readers and self._handoff.budget_bytes)  # written while later steps compute
        self._writes.submit(
            f"{schema}.{table}",
            lambda: store_table(self.database, schema, table, stored, threads=1 if behind else None),
            nbytes,
            self._handoff.budget_bytes,
        )
        if not behind:
            self.wait_for_writes()  # no later step of the run waits for this table: stored before the step ends
        if behind and self._handoff.admits(nbytes):
            self._handoff.keep(_output_id(context), _as_loaded(frame, converted), nbytes, readers)

    def handed_over(self, context: dg.InputContext, columns: Sequence[str] | None) -> pd.DataFrame | None:
        """The frame this run's upstream step kept for this input, or None (then read ``load_table``). Not
        waiting for the table's own write: a failed one fails the next step that waits for the writer."""
        upstream = context.upstream_output
        if upstream is None:
            return None
        return self._handoff.take((upstream.step_key, upstream.name, upstream.mapping_key), columns)

    def load_table(self, schema: str, table: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """A table this run (or the run whose tables a rescore reuses) stored."""
        self.wait_for_writes()
        selected = ", ".join(quoted(c) for c in columns) if columns else "*"
        frame = query_table(self.database, schema, table, lambda name: f"select {selected} from {name}")
        if frame is None:
            raise WarehouseWriteError(f"table {schema}.{table} is not in the warehouse {self.database}")
        return frame

    # reads of what earlier runs left

    def read_previous(self, table: str, schema: str = WAREHOUSE_SCHEMA) -> pd.DataFrame | None:
        """The table as the last run left it (by default a published one), or None: read by an asset before
        its own output replaces it."""
        self.wait_for_writes()
        return read_warehouse_table(self.database, table, schema)

    def read_previous_rows(self, schema: str, table: str, column: str, values: list) -> pd.DataFrame | None:
        """The rows of ``table`` whose ``column`` is one of ``values`` (the score history holds every publish's
        customers, of which an outcome needs one run's)."""
        self.wait_for_writes()
        return read_rows(self.database, schema, table, column, values)

    def distinct_values(self, schema: str, table: str, column: str) -> pd.Series:
        self.wait_for_writes()
        return distinct_values(self.database, schema, table, column)

    # what raw steps read, for their gates and clean stages

    def record_extract(self, record: ExtractRecord) -> None:
        """Keep what the raw step of ``record.source`` read (its row in raw.extracts is replaced)."""
        self._replace_row(EXTRACTS, EXTRACT_COLUMNS, [
            record.source, record.run_id, record.path, record.file_sha256, record.exported_on, record.export_end,
            json.dumps(list(record.columns_absent))])  # fmt: skip

    def _replace_row(self, table: tuple[str, str], columns: Mapping[str, str], values: list) -> None:
        """Replace the row whose first column equals ``values[0]``."""
        self._insert_row(table, columns, values, key_columns=1)

    def _insert_row(
        self, table: tuple[str, str], columns: Mapping[str, str], values: list, key_columns: int
    ) -> None:
        """Insert ``values`` in place of the rows that match their first ``key_columns`` values (the table is
        created with ``columns``' types)."""
        self.wait_for_writes()
        name, keys = quoted(*table), list(columns)[:key_columns]
        connection = _connect(self.database)
        try:
            connection.execute(f"create schema if not exists {quoted(table[0])}")
            ddl = ", ".join(f"{quoted(column)} {kind}" for column, kind in columns.items())
            connection.execute(f"create table if not exists {name} ({ddl})")
            connection.execute("begin transaction")
            matching = " and ".join(f"{quoted(key)} = ?" for key in keys)
            connection.execute(f"delete from {name} where {matching}", values[:key_columns])
            connection.execute(f"insert into {name} values ({', '.join('?' * len(values))})", values)
            connection.execute("commit")
        finally:
            connection.close()

    def extract(self, source: str) -> ExtractRecord | None:
        """What the last raw step of ``source`` read (this run's, or the reused run's), or None."""
        found = self.read_previous_rows(*EXTRACTS, "source", [source])
        if found is None or found.empty:
            return None
        row = found.iloc[0]
        return ExtractRecord(
            source=source, run_id=str(row["run_id"]), path=None if pd.isna(row["path"]) else str(row["path"]),
            file_sha256=str(row["file_sha256"] or ""),
            exported_on=None if pd.isna(row["exported_on"]) else pd.Timestamp(row["exported_on"]).date(),
            export_end=pd.Timestamp(row["export_end"]).to_pydatetime(),
            columns_absent=tuple(json.loads(row["columns_absent"] or "[]")),
        )  # fmt: skip

    def record_ingestion(self, source: str, run_id: str, fingerprint: str, parts: Mapping[str, str]) -> None:
        """Keep the digest of everything ``source``'s clean tables depend on (platform/rescore.py); the event
        sources' digests include the CRM's."""
        self._replace_row(
            INGESTIONS, INGESTION_COLUMNS, [source, run_id, fingerprint, json.dumps(dict(parts))]
        )

    def ingestion_fingerprint(self, source: str) -> str | None:
        """The digest the last clean step of ``source`` recorded (this run's, or the reused run's)."""
        found = self.read_previous_rows(*INGESTIONS, "source", [source])
        return None if found is None or found.empty else str(found.iloc[0]["fingerprint"])

    # the row counts the gates compare with

    def record_gate_rows(self, table: str, run_id: str, rows: int) -> None:
        """``table`` passed its gate in ``run_id`` with ``rows`` rows (a retried check replaces its row)."""
        self._insert_row(GATE_ROWS, GATE_ROW_COLUMNS, [table, run_id, rows, dt.datetime.now(dt.UTC).replace(tzinfo=None)],
                         key_columns=2)  # fmt: skip

    def last_good_rows(self, table: str, run_id: str) -> int | None:
        """Rows of ``table`` in the newest other run in which it passed its gate, or None (first run)."""
        history = self.read_previous_rows(*GATE_ROWS, "table_name", [table])
        if history is None:
            return None
        earlier = history[history["run_id"] != run_id]
        return None if earlier.empty else int(earlier.sort_values("recorded_at").iloc[-1]["rows"])

    # the publish

    def publish(self, tables: Mapping[str, pd.DataFrame], monitoring: Mapping, run_id: str,
                erase_keys: Sequence[str] = ()):  # fmt: skip
        """Both stores, or neither (publish/writers.py); returns a writers.PublishResult."""
        from seg_pipeline.publish.writers import publish

        self.wait_for_writes()  # the tables being published, stored by the background writer
        return publish(self.path, tables, monitoring, self.postgres, self.lock_wait_seconds, run_id,
                       erase_keys=list(erase_keys))  # fmt: skip

    def live_run_ids(self) -> dict[str, str | None]:
        from seg_pipeline.publish.writers import live_run_ids

        self.wait_for_writes()
        return live_run_ids(self.path, self.postgres)


# --- the IO manager -------------------------------------------------------------------------------------


class WarehouseIOManager(dg.IOManager):
    """Stores each asset's DataFrame as table ``<schema>.<asset name>`` (schema from the asset's ``schema``
    metadata) through the run's Warehouse, and loads it for the steps that read it: from the handoff when the
    same run wrote it, else from the warehouse (an input's ``columns`` metadata loads only those)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    @staticmethod
    def _table(context: dg.OutputContext | dg.InputContext, metadata: Mapping | None) -> tuple[str, str]:
        schema = (metadata or {}).get(SCHEMA_KEY)
        if not schema:
            raise dg.DagsterInvariantViolationError(
                f"asset {context.asset_key.to_user_string()} has no '{SCHEMA_KEY}' metadata: the warehouse "
                "does not know where its table goes"
            )
        return str(schema), context.asset_key.path[-1]

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        if obj is None:  # an asset without a table (e.g. a MaterializeResult)
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the warehouse stores DataFrames, got {type(obj)}"
            )
        schema, table = self._table(context, context.definition_metadata)
        self.warehouse.store_output(context, schema, table, obj)
        own_schema = COLUMN_SCHEMA in context.output_metadata or COLUMN_SCHEMA in context.definition_metadata
        context.add_output_metadata(
            {
                "dagster/row_count": len(obj),
                "dagster/table_name": f"{schema}.{table}",
                "dagster/storage_kind": "duckdb",
                "Query": f"SELECT * FROM {schema}.{table}",
                **({} if own_schema else {COLUMN_SCHEMA: frame_schema(obj)}),  # raw tables: the contract's
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        schema, table = self._table(context, upstream.definition_metadata if upstream else None)
        columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
        frame = self.warehouse.handed_over(context, columns)
        if frame is not None:
            return frame
        return self.warehouse.load_table(schema, table, columns)


# --- as Dagster resources -------------------------------------------------------------------------------


def warehouse_of(settings) -> Warehouse:
    """The Warehouse a run of ``settings`` writes: the home's DuckDB file, the handoff budget and the
    PostgreSQL publish target (SEG_PUBLISH_DSN or publish.postgres_dsn)."""
    return Warehouse(
        database=str(settings.warehouse_path),
        handoff_memory_mb=settings.orchestration.handoff_budget_mb,
        postgres_dsn=settings.publish_dsn,
        postgres_schema=settings.publish.postgres_schema,
        lock_wait_seconds=settings.publish.lock_wait_seconds,
    )


@dg.resource(
    required_resource_keys={"settings"},
    description="The run's warehouse (<home>/warehouse.duckdb): background table writes, the in-memory handoff, "
    "reads of earlier runs and the publish to the warehouse and PostgreSQL.",
)
def warehouse_resource(context: dg.InitResourceContext):
    warehouse = warehouse_of(context.resources.settings.resolved)
    try:
        yield warehouse
    finally:
        warehouse.close()  # a write that failed fails the end of the run, naming the table


@dg.io_manager(
    required_resource_keys={"warehouse"},
    description="Stores each asset's DataFrame as table <schema>.<asset> in the run's warehouse.",
)
def warehouse_io_manager(context: dg.InitResourceContext) -> WarehouseIOManager:
    return WarehouseIOManager(context.resources.warehouse)


def warehouse_at(database: str, handoff_memory_mb: int = 2048) -> dict:
    """The ``warehouse`` resource and the IO manager over one DuckDB file, without the settings resource (tests
    and the benchmarks' direct invocation)."""

    @dg.resource(description=f"the warehouse {database}")
    def warehouse(context: dg.InitResourceContext):
        made = Warehouse(database=database, handoff_memory_mb=handoff_memory_mb)
        try:
            yield made
        finally:
            made.close()

    return {"warehouse": warehouse, "io_manager": warehouse_io_manager}

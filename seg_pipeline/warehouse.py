"""The embedded DuckDB warehouse as a Dagster IO manager.

Glue over dagster-duckdb-pandas, whose handler skips empty DataFrames (no table is created, so an
absent optional source breaks every reader downstream) and empties a table with DELETE before
inserting by column position (a changed schema fails or, worse, lands values in the wrong columns).
Here each whole-table output replaces its table in one statement, with the frame's own schema,
empty or not; partitioned outputs keep the library's behaviour.

Every table is written, and a step of the same run that reads it gets the frame in memory instead of
reading it back (the handoff), while a memory budget allows: the frame is first given the dtypes a read
from DuckDB gives, so a step sees the same frame either way, and the full refresh and a rescore that
reads last night's clean tables compute from identical inputs.

The write itself runs on a background thread while the next steps compute, in order, while the
queued frames fit the same budget, on one DuckDB thread (a second one slows the step computing beside
it more than it speeds the write). Every other use of the warehouse file waits for it first
(``wait_for_writes``), and a write that failed fails the next step that waits for it, naming the
table: a step whose output no later step reads (it is written before the step ends), the publish,
which waits for every write, or the end of the run. Readers take the frame from the handoff without
waiting for its write.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dagster import DagsterInvariantViolationError, InputContext, OutputContext, TableColumn, TableSchema
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.execution.plan.outputs import StepOutputHandle
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb.io_manager import DuckDbClient, DuckDBIOManager
from dagster_duckdb_pandas import DuckDBPandasTypeHandler

from seg_pipeline.features.catalogue import catalogue_entry


class _ReplacingClient(DuckDbClient):
    @staticmethod
    def delete_table_slice(context: OutputContext, table_slice: TableSlice, connection) -> None:
        if table_slice.partition_dimensions:
            DuckDbClient.delete_table_slice(context, table_slice, connection)
        # whole tables are replaced by the type handler, atomically


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
    from pandas.core.arrays.masked import BaseMaskedDtype

    columns, unknown, store_original = {}, [], []
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        dtype, present = column.dtype, column.notna()
        if not present.any():
            unknown.append(position)
            columns[position] = column.to_numpy(dtype=object, na_value=None)  # replaced by the read-back
        elif isinstance(dtype, pd.StringDtype):
            columns[position] = column.to_numpy(dtype=object, na_value=None)
        elif isinstance(dtype, BaseMaskedDtype):
            if present.all():
                columns[position] = column.to_numpy(dtype=dtype.numpy_dtype)
            elif isinstance(dtype, pd.BooleanDtype):
                columns[position] = column.array.copy()
            else:
                store_original.append(position)
                wide = "float64" if dtype.kind in "iu" else dtype.numpy_dtype
                columns[position] = column.to_numpy(dtype=wide, na_value=float("nan"))
        elif dtype.kind in "biufM" and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
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


class WarehouseWriteError(RuntimeError):
    """A table could not be stored; raised in the step that waited for the write."""


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

    def wait(self, table: str | None = None) -> None:
        """Until every queued write (or every one up to ``table``'s) is stored; the first failure raised."""
        while True:
            with self._lock:
                names = [q[0] for q in self._queued]
            if not names or (table is not None and table not in names):
                return
            finished = self._wait_oldest()
            if finished == table:
                return

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


_WRITES = _WriteBehind()  # one per process: every user of the warehouse file waits for it


def wait_for_writes() -> None:
    """Until every table handed to the background writer is stored (raises a failed write's error)."""
    _WRITES.wait()


def store_table(
    database: str, schema: str, table: str, frame: pd.DataFrame, threads: int | None = None
) -> None:
    """Replace ``schema.table`` with ``frame`` in one statement (the old table stays if it fails);
    ``threads``: DuckDB's, one for a background write so the other core stays with the steps."""
    import duckdb
    from dagster._utils.backoff import backoff

    config = {"custom_user_agent": "dagster"} | ({"threads": threads} if threads else {})
    connection = backoff(
        fn=duckdb.connect, retry_on=(RuntimeError, duckdb.IOException),
        kwargs={"database": database, "read_only": False, "config": config},
        max_retries=10,
    )  # fmt: skip
    try:
        connection.execute(f"create schema if not exists {schema}")
        _replace_table(connection, schema, table, frame)
    finally:
        connection.close()


def _replace_table(connection, schema: str, table: str, frame: pd.DataFrame) -> None:
    connection.register("seg_output_frame", frame)
    try:
        connection.execute(f"create or replace table {schema}.{table} as select * from seg_output_frame")
    finally:
        connection.unregister("seg_output_frame")


class _ReplacingPandasHandler(DuckDBPandasTypeHandler):
    def load_input(self, context, table_slice: TableSlice, connection) -> pd.DataFrame:
        if table_slice.partition_dimensions:
            return super().load_input(context, table_slice, connection)
        return fetch_frame(connection.execute(DuckDbClient.get_select_statement(table_slice)))

    def handle_output(self, context: OutputContext, table_slice: TableSlice, obj: pd.DataFrame, connection):
        if table_slice.partition_dimensions:
            return super().handle_output(context, table_slice, obj, connection)
        _replace_table(connection, table_slice.schema, table_slice.table, obj)
        context.add_output_metadata(dict(TableMetadataSet(row_count=len(obj), storage_kind="duckdb")))


@dataclass
class _Kept:
    frame: pd.DataFrame
    readers_left: int
    nbytes: int


COLUMN_SCHEMA = "dagster/column_schema"
# columns that many tables share; the features catalogue describes the features
KEY_COLUMNS = {
    "customer_key": "pseudonymous customer key (HMAC of the CRM id; the CRM id itself stays in the clean stage)",
    "as_of": "the date the run's features are computed as of",
    "run_id": "the Dagster run that wrote the row",
    "segment_id": "stable segment id",
    "segment_name": "readable segment name derived from the profile",
}


def frame_schema(frame: pd.DataFrame) -> TableSchema:
    """The Dagster column schema of a table as written: names, pandas types, and what the column is where the
    features catalogue or the shared key columns say it; the UI shows it on the asset's page."""

    def described(name: str) -> str:
        feature = catalogue_entry(name)
        return KEY_COLUMNS.get(name) or (f"{feature.definition} (from {feature.source})" if feature else "")

    return TableSchema(
        columns=[
            TableColumn(name=str(name), type=str(dtype), description=described(str(name)) or None)
            for name, dtype in frame.dtypes.items()
        ]
    )


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


def _handle(output: OutputContext) -> StepOutputHandle:
    return StepOutputHandle(output.step_key, output.name, output.mapping_key)


class Handoff:
    """Frames a run wrote, kept in memory for the steps of the same run that read them.

    Each frame is kept until its last reader in the run's plan has it (that reader gets the frame itself,
    earlier ones a copy, so no step sees another's changes), and only while all kept frames fit in
    ``budget_bytes``; whatever is not kept is read back from the warehouse as before.
    """

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._kept: dict[StepOutputHandle, _Kept] = {}
        self._readers: dict[StepOutputHandle, int] | None = None

    @property
    def kept_bytes(self) -> int:
        return sum(k.nbytes for k in self._kept.values())

    def readers(self, context: OutputContext, handle: StepOutputHandle) -> int:
        """How many inputs of the steps this run executes load ``handle`` (a retried step loads again;
        it then reads from the warehouse)."""
        if self._readers is None:
            self._readers = {}
            for step in context.step_context.execution_plan.get_steps_to_execute_in_topo_order():
                for step_input in step.step_inputs:
                    if step_input.dagster_type_key == "Nothing":  # order-only dependency: nothing loaded
                        continue
                    for upstream in step_input.get_step_output_handle_dependencies():
                        self._readers[upstream] = self._readers.get(upstream, 0) + 1
        return self._readers.get(handle, 0)

    def admits(self, nbytes: int) -> bool:
        """Whether a frame of ``nbytes`` fits in what the budget has left."""
        return self.kept_bytes + nbytes <= self.budget_bytes

    def keep(self, context: OutputContext, frame: pd.DataFrame, nbytes: int, readers: int) -> None:
        self._kept[_handle(context)] = _Kept(frame, readers, nbytes)

    def take(self, context: InputContext, columns: Sequence[str] | None) -> pd.DataFrame | None:
        """The kept frame (``columns`` of it) for this input, or None."""
        handle = _handle(context.upstream_output)
        kept = self._kept.get(handle)
        if kept is None:
            return None
        kept.readers_left -= 1
        if kept.readers_left <= 0:
            del self._kept[handle]
            return kept.frame[list(columns)] if columns else kept.frame
        return kept.frame[list(columns)] if columns else kept.frame.copy()


class _HandingOffIOManager(DbIOManager):
    def __init__(self, handoff: Handoff, **kwargs):
        super().__init__(**kwargs)
        self._handoff = handoff

    @staticmethod
    def _in_run(context: OutputContext | InputContext) -> bool:
        """A step of a run, not a context built by hand."""
        try:
            context.step_context  # noqa: B018
        except DagsterInvariantViolationError:
            return False
        return True

    def handle_output(self, context: OutputContext, obj: object) -> None:
        if not isinstance(obj, pd.DataFrame) or not context.has_asset_key or context.has_asset_partitions:
            wait_for_writes()
            return super().handle_output(context, obj)
        table_slice = self._get_table_slice(context, context)
        converted = as_read_back(obj)
        stored = converted.to_store(obj)
        readers = self._handoff.readers(context, _handle(context)) if self._in_run(context) else 0
        nbytes = frame_bytes(converted.frame)
        behind = bool(readers and self._handoff.budget_bytes)  # written while later steps compute
        _WRITES.submit(
            f"{table_slice.schema}.{table_slice.table}",
            lambda: store_table(
                self._database, table_slice.schema, table_slice.table, stored, threads=1 if behind else None
            ),
            nbytes,
            self._handoff.budget_bytes,
        )
        if not behind:
            wait_for_writes()  # no later step of the run waits for this table: it is stored before the step ends
        schema = {}  # an asset's own column schema (raw tables: the source contract's) wins
        if COLUMN_SCHEMA not in context.output_metadata and COLUMN_SCHEMA not in context.definition_metadata:
            schema[COLUMN_SCHEMA] = frame_schema(obj)
        context.add_output_metadata(
            {
                **TableMetadataSet(row_count=len(obj), storage_kind="duckdb"),
                "Query": self._db_client.get_select_statement(table_slice),
                **TableMetadataSet(table_name=self._db_client.get_table_name(table_slice)),
                **schema,
            }
        )
        if readers and self._handoff.budget_bytes and self._handoff.admits(nbytes):
            self._handoff.keep(context, _as_loaded(obj, converted), nbytes, readers)

    def load_input(self, context: InputContext) -> object:
        upstream = context.upstream_output
        if (
            upstream is not None
            and upstream.has_asset_key
            and not context.has_asset_partitions
            and self._in_run(context)
            and upstream.run_id == context.step_context.run_id
        ):
            # not waiting for the table's own write: a failed one fails the next step that waits for the
            # writer (one whose output no later step reads, the publish, the end of the run)
            frame = self._handoff.take(context, (context.definition_metadata or {}).get("columns"))
            if frame is not None:
                return frame
        wait_for_writes()
        return super().load_input(context)


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


class WarehouseIOManager(DuckDBIOManager):
    """Stores each asset's DataFrame as table ``<schema>.<asset name>`` in the warehouse DuckDB file and
    hands it to the steps of the same run that read it, up to ``handoff_memory_mb`` (0: read everything
    back from the warehouse)."""

    handoff_memory_mb: int = 2048

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [_ReplacingPandasHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pd.DataFrame

    def teardown_after_execution(self, context) -> None:
        wait_for_writes()  # normally nothing is left: each write is waited for by a later step

    def create_io_manager(self, context) -> DbIOManager:
        return _HandingOffIOManager(
            Handoff(self.handoff_memory_mb * 1024 * 1024),
            db_client=_ReplacingClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="WarehouseIOManager",
        )


def read_previous(database: str, schema: str, table: str) -> pd.DataFrame | None:
    """The table as the last run left it, or None: read by an asset before its own output replaces it, and
    by `seg-pipeline export` (``read_warehouse_table``).

    Read-only, so it works where the warehouse cannot be written (a read-only home) and beside another
    process reading it. DuckDB refuses a read-only connection while this process holds a read-write one
    on the same file; none is open here: the IO manager's connections last one load or store, and
    ``wait_for_writes`` has ended the background writer's."""
    return _query_previous(database, schema, table, lambda name: f"select * from {name}")


def read_previous_rows(
    database: str, schema: str, table: str, column: str, values: list
) -> pd.DataFrame | None:
    """The rows of ``table`` whose ``column`` is one of ``values`` (read_previous, filtered in DuckDB: the
    score history holds every publish's customers, of which an outcome needs one run's)."""
    wanted = pd.DataFrame({"value": pd.Series(list(values), dtype="object")})
    return _query_previous(database, schema, table,
                           lambda name: f'select * from {name} where "{column}" in (select value from wanted)',
                           {"wanted": wanted})  # fmt: skip


def distinct_values(database: str, schema: str, table: str, column: str) -> pd.Series:
    """The distinct values of one column (empty when the table does not exist)."""
    found = _query_previous(database, schema, table, lambda name: f'select distinct "{column}" from {name}')
    return pd.Series([], dtype="object") if found is None else found[column].astype("object")


def _query_previous(database: str, schema: str, table: str, query, frames: dict | None = None):
    """``query(quoted table name)`` on a read-only connection (see read_previous), ``frames`` registered as
    views; None when the warehouse or the table does not exist."""
    import duckdb

    wait_for_writes()
    if not Path(database).exists():
        return None
    with duckdb.connect(database, read_only=True) as connection:
        found = connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
        if not found:
            return None
        for name, frame in (frames or {}).items():
            connection.register(name, frame)
        return fetch_frame(connection.execute(query(f'"{schema}"."{table}"')))


def existing_tables(database: str) -> set[str]:
    """Every "schema.table" in the warehouse (empty when the file does not exist yet)."""
    import duckdb

    wait_for_writes()
    if not Path(database).exists():
        return set()
    with duckdb.connect(database, read_only=True) as connection:
        rows = connection.execute("select table_schema, table_name from information_schema.tables").fetchall()
    return {f"{schema}.{table}" for schema, table in rows}

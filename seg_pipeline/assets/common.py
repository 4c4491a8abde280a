"""Helpers shared by the asset modules: the run's as_of date and previous materializations."""

import datetime as dt

import dagster as dg
from dagster._core.errors import DagsterInvalidPropertyError

from seg_pipeline.config import Settings
from seg_pipeline.sources.window import export_end, exported_on


def _run_attribute(context, name: str) -> str:
    try:
        return getattr(context.run, name)
    except DagsterInvalidPropertyError:  # not part of dagster's public names
        return "direct"


def current_run_id(context) -> str:
    """The Dagster run's id; "direct" when the asset is invoked outside a run (Dagster's direct invocation,
    as the benchmark's Dagster-overhead comparison does)."""
    return _run_attribute(context, "run_id")


def current_job_name(context) -> str:
    return _run_attribute(context, "job_name")


def run_as_of(context: dg.OpExecutionContext | dg.AssetCheckExecutionContext, settings: Settings) -> dt.date:
    """The configured as_of, else the one a rescore planned with (reuse.AS_OF_TAG), else the date (UTC) the
    run was created: one date for every step of a run."""
    from seg_pipeline.reuse import AS_OF_TAG

    if settings.as_of is not None:
        return settings.as_of
    record = context.instance.get_run_record_by_id(current_run_id(context))
    if record is not None and AS_OF_TAG in record.dagster_run.tags:
        return dt.date.fromisoformat(record.dagster_run.tags[AS_OF_TAG])
    created = record.create_timestamp if record is not None else dt.datetime.now(dt.UTC)
    return created.astimezone(dt.UTC).date()


def metadata_value(metadata: dict, name: str, default=None):
    """The plain value of one metadata entry (``latest_metadata``'s values are MetadataValue objects)."""
    entry = metadata.get(name)
    return default if entry is None else entry.value


NO_EXPORT_DATE = "none (no extract)"


def window_metadata(settings: Settings, source: str, as_of: dt.date) -> dict:
    """The raw asset's record of the extract's export date and this run's export_end (sources/window.py)."""
    exported = exported_on(settings, source)
    return {
        "exported_on": exported.isoformat() if exported else NO_EXPORT_DATE,
        "export_end": export_end(as_of, exported).isoformat(),
    }


def run_export_end(raw_metadata: dict, settings: Settings, source: str, as_of: dt.date) -> dt.datetime:
    """This run's export_end for ``source``, from the export date its raw asset recorded, so the gates and
    the clean stage judge the rows of the file that was read by the same date. A raw table materialized
    before that was recorded: worked out again from the config and the file."""
    recorded = metadata_value(raw_metadata, "exported_on")
    if recorded is None:
        return export_end(as_of, exported_on(settings, source))
    return export_end(as_of, None if recorded == NO_EXPORT_DATE else dt.date.fromisoformat(recorded))


def latest_metadata(context, asset: str) -> dict:
    """Metadata of the asset's newest materialization (this run's, when it ran before the caller)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    return dict(event.asset_materialization.metadata) if event and event.asset_materialization else {}


def previous_good_row_count(context, asset: str) -> int | None:
    """Rows of the asset in the newest earlier run that succeeded as a whole (gates passed)."""
    records = context.instance.fetch_materializations(dg.AssetKey(asset), limit=25).records
    for record in records:
        if record.run_id == current_run_id(context):
            continue
        run = context.instance.get_run_by_id(record.run_id)
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            continue
        rows = record.asset_materialization.metadata.get("dagster/row_count")
        if rows is not None:
            return int(rows.value)
    return None


def io_retry_policy(settings: Settings) -> dg.RetryPolicy:
    """For steps that read or write outside the process (extracts, PostgreSQL): transient errors (a file
    share or a database restarting) are retried with exponential backoff; our own errors (a bad file,
    a contract breach) are raised as Failure(allow_retries=False) and fail at once."""
    orchestration = settings.orchestration
    return dg.RetryPolicy(max_retries=orchestration.io_retries, delay=orchestration.io_retry_delay_seconds,
                          backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)  # fmt: skip

"""Stage 2, validated: GX suites (expectations/<table>.json) as blocking asset checks on raw and clean tables."""

import datetime as dt
import inspect

import dagster as dg
import pandas as pd

from seg_pipeline.assets.common import (
    current_run_id,
    end_of_day,
    latest_metadata,
    previous_good_row_count,
    run_as_of,
)
from seg_pipeline.resources import PipelineSettings

EARLIEST_PLAUSIBLE = dt.datetime(1990, 1, 1)


def suite_parameters(settings, as_of: dt.date, previous: int | None) -> dict:
    drop = settings.quality.max_row_count_drop
    return {
        "min_row_count": max(1, int(previous * (1 - drop))) if previous else 1,
        "as_of_end": end_of_day(as_of),
        "earliest_date": EARLIEST_PLAUSIBLE,
        "fresh_after": dt.datetime.combine(
            as_of - dt.timedelta(days=settings.quality.max_staleness_days), dt.time()
        ),
        "retention_start": dt.datetime.combine(
            as_of - dt.timedelta(days=settings.privacy.retention_days), dt.time()
        ),
    }


def check_result(outcome, parameters: dict, previous_rows: int | None) -> dg.AssetCheckResult:
    failed_md = "\n".join(f"- {f.describe()}" for f in outcome.failed) or "none"
    metadata = {
        "success_percent": dg.MetadataValue.float(round(outcome.success_percent, 2)),
        "expectations_evaluated": outcome.evaluated,
        "failed_expectations": dg.MetadataValue.md(failed_md),
        "failed_detail": dg.MetadataValue.json(
            [
                {
                    "expectation": f.expectation,
                    "column": f.column,
                    "observed": str(f.observed),
                    "unexpected_percent": f.unexpected_percent,
                    "kwargs": {k: str(v) for k, v in f.kwargs.items()},
                }
                for f in outcome.failed
            ]
        ),  # fmt: skip
        "previous_good_row_count": previous_rows if previous_rows is not None else "none (first run)",
        "min_row_count": parameters["min_row_count"],
    }
    if outcome.docs_url:
        metadata["data_docs"] = dg.MetadataValue.url(outcome.docs_url)
        # browsers refuse file:// links from an http page; the path can be pasted into the address bar
        metadata["data_docs_path"] = dg.MetadataValue.path(outcome.docs_url.removeprefix("file://"))
    if outcome.docs_index:
        metadata["data_docs_index"] = dg.MetadataValue.url(outcome.docs_index)
    if outcome.skipped_columns:
        metadata["skipped_absent_columns"] = ", ".join(outcome.skipped_columns)
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=None
        if outcome.success
        else f"{len(outcome.failed)} expectation(s) failed: "
        + "; ".join(f.describe() for f in outcome.failed),
    )


def gx_suite_check(
    table: str, source_asset: str | None = None, optional_columns: bool = False
) -> dg.AssetChecksDefinition:
    """A blocking check that validates ``table`` with expectations/<table>.json.

    ``source_asset`` is the raw table it comes from: an absent optional source skips the check, and
    expectations on columns that source lacks are left out. With ``optional_columns`` expectations on
    any column the table does not have are left out (features of an absent source).
    """

    def check(
        context: dg.AssetCheckExecutionContext, settings: PipelineSettings, **inputs
    ) -> dg.AssetCheckResult:
        from seg_pipeline.quality.gx import suite_columns, validate

        cfg = settings.get()
        frame: pd.DataFrame = inputs[table]
        produced = latest_metadata(context, source_asset or table)
        source_path = produced.get("source_path")
        if source_path is not None and str(source_path.value).startswith("absent"):
            return dg.AssetCheckResult(
                passed=True, metadata={"skipped": "optional source absent; empty table"}
            )
        absent = produced.get("columns_absent_in_source")
        absent_columns = {c.strip() for c in str(absent.value).split(",")} - {"none", ""} if absent else set()
        suite_path = cfg.expectations_dir / f"{table}.json"
        if optional_columns:
            absent_columns |= suite_columns(suite_path) - set(frame.columns)
        previous = previous_good_row_count(context, table)
        parameters = suite_parameters(cfg, run_as_of(context, cfg), previous)
        outcome = validate(
            frame,
            suite_path,
            gx_root=cfg.gx_root,
            docs_dir=cfg.datadocs_dir,
            run_name=current_run_id(context),
            parameters=parameters,
            absent_columns=absent_columns,
        )
        return check_result(outcome, parameters, previous)

    # Dagster loads the checked asset into the parameter named after it; the name differs per table.
    check.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.AssetCheckExecutionContext
            ),
            inspect.Parameter(
                "settings", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=PipelineSettings
            ),
            inspect.Parameter(table, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ]
    )
    return dg.asset_check(
        asset=table,
        name=f"{table}_quality",
        blocking=True,
        description=f"GX suite expectations/{table}.json; failure blocks everything downstream in the run.",
    )(check)


RAW_TABLES = ("raw_crm_customers", "raw_orders", "raw_web_events", "raw_support_tickets", "raw_email_events")
raw_quality_checks = [gx_suite_check(t) for t in RAW_TABLES]
CLEAN_OF_RAW = {t: "clean_" + t.removeprefix("raw_").removeprefix("crm_") for t in RAW_TABLES}
clean_quality_checks = [gx_suite_check(clean, raw) for raw, clean in CLEAN_OF_RAW.items()]
# later stages: their tables are gated the same way, so a bad fit never reaches what reads it
stage_quality_checks = [
    gx_suite_check("customer_features", optional_columns=True),
    *(gx_suite_check(t) for t in ("customer_clusters", "segment_profiles", "lifecycle_stage")),
]

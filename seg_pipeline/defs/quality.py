"""Stage 2, validated: GX suites (expectations/<table>.json) as blocking asset checks on raw and clean tables."""

import datetime as dt
import inspect

import dagster as dg
import pandas as pd

from seg_pipeline.defs.common import current_run_id
from seg_pipeline.defs.publish import published_key
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.validations import Validations
from seg_pipeline.platform.warehouse import Warehouse
from seg_pipeline.publish.contract import PUBLISHED_TABLES
from seg_pipeline.sources.window import end_of_day

EARLIEST_PLAUSIBLE = dt.datetime(1990, 1, 1)


def suite_parameters(
    settings, as_of: dt.date, previous: int | None, export_end: dt.datetime | None = None
) -> dict:
    """``export_end``: the source's (sources/window.py); tables of no source are bounded by as_of."""
    drop = settings.quality.max_row_count_drop
    return {
        "min_row_count": max(1, int(previous * (1 - drop))) if previous else 1,
        "as_of_end": end_of_day(as_of),
        "export_end": export_end or end_of_day(as_of),
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
        # served by `seg-pipeline dev` (browsers refuse file:// links from the UI); the path without it
        metadata["data_docs"] = dg.MetadataValue.url(outcome.docs_url)
        metadata["data_docs_path"] = dg.MetadataValue.path(str(outcome.docs_path))
    if outcome.docs_index:
        metadata["data_docs_index"] = dg.MetadataValue.url(outcome.docs_index)
        metadata["data_docs_index_path"] = dg.MetadataValue.path(str(outcome.docs_index_path))
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
        context: dg.AssetCheckExecutionContext,
        settings: PipelineSettings,
        warehouse: Warehouse,
        validations: Validations,
        **inputs,
    ) -> dg.AssetCheckResult:
        cfg = settings.resolved
        frame: pd.DataFrame = inputs[table]
        # the raw table this one comes from: the extract its raw step read (absent, columns, export date)
        raw_table = source_asset or (table if table.startswith("raw_") else None)
        extract = warehouse.extract(raw_table.removeprefix("raw_")) if raw_table else None
        if extract is not None and extract.absent:
            return dg.AssetCheckResult(
                passed=True, metadata={"skipped": "optional source absent; empty table"}
            )
        absent_columns = set(extract.columns_absent) if extract is not None else set()
        if optional_columns:
            absent_columns |= validations.suite_columns(table) - set(frame.columns)
        previous = warehouse.last_good_rows(table, current_run_id(context))
        parameters = suite_parameters(cfg, settings.as_of, previous, extract.export_end if extract else None)
        outcome = validations.validate(frame, table, run_name=current_run_id(context), parameters=parameters,
                                       absent_columns=absent_columns)  # fmt: skip
        if outcome.success:  # the reference of the next runs' row-count rule
            warehouse.record_gate_rows(table, current_run_id(context), len(frame))
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
            inspect.Parameter(
                "warehouse", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.ResourceParam[Warehouse]
            ),
            inspect.Parameter(
                "validations",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=dg.ResourceParam[Validations],
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


RAW_TABLES = ("raw_crm_customers", "raw_orders", "raw_web_events", "raw_support_tickets", "raw_email_events",
              "raw_interventions")  # fmt: skip
raw_quality_checks = [gx_suite_check(t) for t in RAW_TABLES]
CLEAN_OF_RAW = {t: "clean_" + t.removeprefix("raw_").removeprefix("crm_") for t in RAW_TABLES}
clean_quality_checks = [gx_suite_check(clean, raw) for raw, clean in CLEAN_OF_RAW.items()]


@dg.asset_check(
    asset="churn_scores",
    additional_ins={"customer_features": dg.AssetIn("customer_features")},
    blocking=True,
    description="One score for each profiled customer (customer_features), none for anyone else; failure "
    "blocks everything downstream in the run.",
)
def churn_scores_cover_profiled_customers(
    churn_scores: pd.DataFrame, customer_features: pd.DataFrame
) -> dg.AssetCheckResult:
    from seg_pipeline.quality.coverage import key_coverage

    coverage = key_coverage(churn_scores["customer_key"], customer_features["customer_key"])
    return dg.AssetCheckResult(
        passed=coverage.complete,
        metadata={
            "profiled_customers": coverage.expected,
            "without_score": coverage.missing,
            "scores_not_profiled": coverage.extra,
            "repeated_scores": coverage.repeated,
        },  # fmt: skip
        description=coverage.describe("score", "profiled customers"),
    )


def published_table_check(table: str) -> dg.AssetChecksDefinition:
    """The published ``table`` as consumers read it from the warehouse after the swap, against the GX suite
    expectations/published_<table>.json (the contract's columns, unique keys, this run's rows)."""
    suite = f"published_{table}"

    @dg.asset_check(
        asset=published_key(table),
        name=f"{suite}_quality",
        description=f"GX suite expectations/{suite}.json on the published table in the warehouse.",
    )
    def check(
        context: dg.AssetCheckExecutionContext,
        warehouse: dg.ResourceParam[Warehouse],
        validations: dg.ResourceParam[Validations],
    ) -> dg.AssetCheckResult:
        frame = warehouse.read_previous(table)
        if frame is None:
            return dg.AssetCheckResult(passed=False, description=f"published.{table} is not in the warehouse")
        parameters = {"run_ids": [current_run_id(context)], "min_row_count": 1}
        outcome = validations.validate(frame, suite, run_name=current_run_id(context), parameters=parameters)
        return check_result(outcome, parameters, None)

    return check


# later stages: their tables are gated the same way, so a bad fit never reaches what reads it
stage_quality_checks = [
    gx_suite_check("customer_features", optional_columns=True),
    *(gx_suite_check(t) for t in ("customer_clusters", "segment_profiles", "lifecycle_stage")),
    gx_suite_check("churn_scores"),
    churn_scores_cover_profiled_customers,
    gx_suite_check("action_tiers"),
    gx_suite_check("retention_segment"),
]
published_quality_checks = [published_table_check(t) for t in PUBLISHED_TABLES]


def definitions(settings) -> dg.Definitions:
    """The gates of every stage."""
    return dg.Definitions(asset_checks=[*raw_quality_checks, *clean_quality_checks, *stage_quality_checks,
                                        *published_quality_checks])  # fmt: skip

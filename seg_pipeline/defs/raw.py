"""Stage 1, raw: one asset per source extract, coerced to its canonical contract (sources/).

No `from __future__ import annotations` here: Dagster inspects the context annotation at runtime.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from seg_pipeline.config import Settings
from seg_pipeline.defs.common import current_run_id, io_retry_policy
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.warehouse import ExtractRecord, Warehouse
from seg_pipeline.sources.configured import read_configured_source
from seg_pipeline.sources.contracts import CONTRACTS, SOURCE_ROW, SourceContract
from seg_pipeline.sources.files import unreadable_reason
from seg_pipeline.sources.masking import shown_name
from seg_pipeline.sources.readers import IngestReport
from seg_pipeline.sources.window import export_end, exported_on

NO_EXPORT_DATE = "none (no extract)"

COLUMN_NOTES = {
    SOURCE_ROW: "1-based row in the source file",
    "parse_errors": "why a required value did not parse; the clean stage quarantines these rows",
}


def table_schema(frame: pd.DataFrame, contract: SourceContract) -> dg.TableSchema:
    descriptions = {c.name: c.description for c in contract.columns}
    required = set(contract.required_columns)
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=str(dtype),
                description=descriptions.get(name) or COLUMN_NOTES.get(name, ""),
                constraints=dg.TableColumnConstraints(nullable=name not in required and name != SOURCE_ROW),
            )
            for name, dtype in frame.dtypes.items()
        ]
    )


def ingest_metadata(frame: pd.DataFrame, report: IngestReport, contract: SourceContract) -> dict:
    metadata: dict = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": table_schema(frame, contract),
        "source_path": dg.MetadataValue.path(str(report.path)) if report.path else "absent (optional source)",
        "file_sha256": report.sha256 or "",
        "format": report.format or "",
        "columns_absent_in_source": ", ".join(report.columns_absent) or "none",
        "ignored_source_columns": ", ".join(map(shown_name, report.ignored_columns)) or "none",
        "values_coerced_to_null": sum(v["count"] for v in report.coerced_to_null.values()),
        "rows_with_unparseable_required_value": sum(report.unparseable_required.values()),
        "blank_rows_skipped": report.blank_rows,
    }
    if report.delimiter:
        metadata["delimiter"] = repr(report.delimiter)
    if report.renamed:
        metadata["column_mapping"] = dg.MetadataValue.json(report.renamed)
    if report.coerced_to_null:
        metadata["coerced_to_null_detail"] = dg.MetadataValue.json(report.coerced_to_null)
    return metadata


def _read_failure(description: str, path: Path | None) -> dg.Failure:
    """A failed read that the step's retry policy must not retry: a bad or unreadable file stays so."""
    return dg.Failure(
        description=description, metadata={"source_path": str(path) if path else "none"}, allow_retries=False
    )


def _raw_asset(source: str, retry_policy: dg.RetryPolicy) -> dg.AssetsDefinition:
    contract = CONTRACTS[source]

    @dg.asset(
        name=f"raw_{source}",
        group_name="raw",
        kinds={"pandas", "duckdb"},
        metadata={"schema": "raw"},
        retry_policy=retry_policy,
        description=(
            f"The {source} extract coerced to its canonical contract "
            f"({'required' if contract.required_source else 'optional; empty typed table when absent'})."
        ),
    )
    def raw_table(
        context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.Output[pd.DataFrame]:
        cfg = settings.resolved
        path = None
        try:
            path = cfg.source_path(source)
            frame, report = read_configured_source(source, cfg)
        except SegPipelineError as exc:
            raise _read_failure(str(exc), path) from None
        except PermissionError as exc:  # e.g. a folder of the path: not transient, retrying cannot help
            where = Path(exc.filename) if exc.filename else cfg.landing_dir
            raise _read_failure(f"{source}: {where} {unreadable_reason(where)}.", path) from None
        for column, detail in report.coerced_to_null.items():
            rows = ", ".join(str(e["row"]) for e in detail["examples"])
            context.log.warning(
                f"{report.path}: optional column {column!r}: {detail['count']} value(s) {detail['rule']} "
                f"were set to missing (rows {rows}{' ...' if detail['count'] > len(detail['examples']) else ''})"
            )
        if report.blank_rows:
            context.log.info(
                f"{report.path}: {report.blank_rows} blank row(s) left out (no value in any column)"
            )
        if path is None:
            context.log.info(f"{source}: no extract configured or found in the landing folder; empty table")
        # what the gate and the clean stage judge this file's rows by: the export date of the file read here
        exported = exported_on(cfg, source)
        record = ExtractRecord(
            source=source, run_id=current_run_id(context), path=str(report.path) if report.path else None,
            file_sha256=report.sha256 or "", exported_on=exported, export_end=export_end(settings.as_of, exported),
            columns_absent=tuple(report.columns_absent),
        )  # fmt: skip
        warehouse.record_extract(record)
        window = {"exported_on": exported.isoformat() if exported else NO_EXPORT_DATE,
                  "export_end": record.export_end.isoformat()}  # fmt: skip
        return dg.Output(frame, metadata=ingest_metadata(frame, report, contract) | window)

    return raw_table


def raw_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """One raw asset per source; built from the settings for the retry policy."""
    return [_raw_asset(source, io_retry_policy(settings)) for source in CONTRACTS]


def definitions(settings: Settings) -> dg.Definitions:
    """One raw asset per source; built from the settings for the retry policy."""
    return dg.Definitions(assets=raw_assets(settings))

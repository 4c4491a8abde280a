"""Stage 4, features: customer_features as of the run's as_of (features/)."""

import dagster as dg
import pandas as pd

from seg_pipeline.features.build import EVENT_COLUMNS, build_features
from seg_pipeline.features.catalogue import catalogue_markdown
from seg_pipeline.platform.settings import PipelineSettings


def event_inputs() -> dict[str, dg.AssetIn]:
    """The clean event tables, each loaded with only the columns the feature builders read."""
    return {name: dg.AssetIn(metadata={"columns": columns}) for name, columns in EVENT_COLUMNS.items()}


@dg.asset(
    group_name="features",
    kinds={"pandas", "duckdb"},
    metadata={"schema": "features"},
    description="One row per profiled customer: point-in-time features as of as_of (catalogue in the README).",
    ins=event_inputs(),
)
def customer_features(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    clean_customers: pd.DataFrame,
    clean_orders: pd.DataFrame,
    clean_web_events: pd.DataFrame,
    clean_support_tickets: pd.DataFrame,
    clean_email_events: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    cfg = settings.resolved
    as_of = settings.as_of
    built = build_features(
        clean_customers, clean_orders, clean_web_events, clean_support_tickets, clean_email_events,
        as_of=as_of, attributes=cfg.customer_attributes.names, horizon_days=cfg.churn.horizon_days,
    )  # fmt: skip
    for reason, count in built.excluded.items():
        context.log.info(f"{count} customer(s) not profiled: {reason}")
    for note in built.notes:
        context.log.info(note)
    btyd = built.btyd.params.as_dict() if built.btyd and built.btyd.params else None
    missing = built.table.drop(columns="customer_key").isna().mean().round(3)
    return dg.Output(
        built.table,
        metadata={
            "dagster/row_count": len(built.table),
            "as_of": as_of.isoformat(),
            "features": len(built.table.columns) - 1,
            "sources_used": ", ".join(built.sources_used) or "crm_customers only",
            **{f"not_profiled/{k}": v for k, v in built.excluded.items()},
            "missing_share": dg.MetadataValue.json(missing[missing > 0].to_dict()),
            "bg_nbd": dg.MetadataValue.json(btyd) if btyd else "; ".join(built.notes),
            "bg_nbd_seconds": built.btyd_seconds,
            "catalogue": dg.MetadataValue.md(catalogue_markdown()),
        },
    )


def definitions(settings) -> dg.Definitions:
    return dg.Definitions(assets=[customer_features])

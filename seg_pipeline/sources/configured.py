"""A source read the way the configuration says: its file (configured or landed), column mapping, format,
encoding, and the CRM columns kept beyond the contract."""

from __future__ import annotations

import pandas as pd

from seg_pipeline.config import Settings
from seg_pipeline.sources.contracts import CONTRACTS, ColumnType
from seg_pipeline.sources.readers import IngestReport, read_source


def extra_columns(source: str, settings: Settings) -> dict[str, ColumnType]:
    """CRM columns kept beyond the contract: the listed attributes and a non-canonical explicit label."""
    if source != "crm_customers":
        return {}
    canonical = set(CONTRACTS[source].column_names)
    extra: dict[str, ColumnType] = {name: "float" for name in settings.customer_attributes.numeric}
    extra |= {name: "string" for name in settings.customer_attributes.categorical if name not in canonical}
    label = settings.churn.explicit_column
    if settings.churn.label == "explicit" and label not in CONTRACTS[source].column_names:
        extra[label] = "bool"
    return extra


def read_configured_source(source: str, cfg: Settings) -> tuple[pd.DataFrame, IngestReport]:
    """Read one source as the raw asset does: the configured (or landed) file, mapping, format and encoding."""
    source_cfg = cfg.source(source)
    cfg.check_source_path(source)
    return read_source(
        CONTRACTS[source],
        cfg.source_path(source),
        columns=source_cfg.columns,
        fmt=source_cfg.format,
        delimiter=source_cfg.delimiter,
        encoding=source_cfg.encoding,
        extra=extra_columns(source, cfg),
        max_unparseable_share=cfg.quality.max_unparseable_share,
    )

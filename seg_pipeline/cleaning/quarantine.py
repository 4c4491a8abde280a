"""Rows that fail a row-level rule leave the data with their reason instead of failing the run."""

from __future__ import annotations

import pandas as pd

from seg_pipeline.sources.contracts import SOURCE_ROW

MAX_VALUE_CHARS = 200  # the offending value is kept for reading, not as a copy of a runaway field
QUARANTINE_COLUMNS = ("source", "source_row", "record_key", "rule", "column", "value", "reason", "run_id")
# the column that names a row to a person reading the quarantine (never PII)
RECORD_KEYS = {
    "crm_customers": "customer_id",
    "orders": "order_id",
    "support_tickets": "ticket_id",
    "web_events": "session_id",
    "email_events": "campaign_id",
    "interventions": "campaign",
}


def quarantine_rows(
    rows: pd.DataFrame, source: str, rule: str, column: str | None, reason: str | pd.Series, run_id: str
) -> pd.DataFrame:
    """Quarantine records for ``rows``; ``value`` is the offending value (never for PII columns)."""
    key_column = RECORD_KEYS.get(source)
    pii = column in ("email", "phone", "name")
    return pd.DataFrame(
        {
            "source": pd.Series(source, index=rows.index, dtype="string"),
            "source_row": rows[SOURCE_ROW].astype("int64"),
            "record_key": rows[key_column].astype("string") if key_column in rows else pd.NA,
            "rule": pd.Series(rule, index=rows.index, dtype="string"),
            "column": pd.Series(column, index=rows.index, dtype="string"),
            "value": _shown_values(rows[column]) if column in rows and not pii else pd.NA,
            "reason": reason.astype("string")
            if isinstance(reason, pd.Series)
            else pd.Series(reason, index=rows.index, dtype="string"),
            "run_id": pd.Series(run_id, index=rows.index, dtype="string"),
        },
        index=rows.index,
    ).astype({"record_key": "string", "value": "string"})


def _shown_values(values: pd.Series) -> pd.Series:
    """The offending values for a reviewer (contact data in the wrong column by its shape only)."""
    from seg_pipeline.sources.masking import for_review

    return (
        values.astype("string")
        .str.slice(0, MAX_VALUE_CHARS)
        .map(for_review, na_action="ignore")
        .astype("string")
    )


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="int64" if c == "source_row" else "string") for c in QUARANTINE_COLUMNS}
    )

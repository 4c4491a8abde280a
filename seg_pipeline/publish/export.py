"""CSV files for people: published tables written so a spreadsheet shows every text cell as text.

A spreadsheet (Excel, LibreOffice Calc, Google Sheets) evaluates a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula, so a CRM id such as ``=HYPERLINK("http://x/?a","Click")`` or
``+cmd|' /C calc'!A0`` would run on the machine of whoever opens the export ("CSV injection", OWASP).
Following OWASP, a text cell is prefixed with a single quote ``'``, which spreadsheets read as "this
is text" and do not show, when it starts with:

- ``=``, ``+``, ``-``, ``@``, TAB (0x09), CR (0x0D), LF (0x0A) or NUL (0x00);
- their full-width and small forms (``＝ ＋ － ＠``, ``﹦ ﹢ ﹣ ﹫``), which some spreadsheets in East
  Asian locales turn into the ASCII characters;
- whitespace followed by any of those (an importer that trims spaces would otherwise expose it).

Only text cells change: numbers, dates and booleans keep their type and value (``-0.5`` in a float
column stays ``-0.5``). The tables themselves keep the raw value; only the exported file is escaped.
Quoting stays the CSV writer's (RFC 4180: quotes doubled, fields with commas, quotes or line breaks
quoted), so the csv module reads back exactly ``'`` + the original text.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FORMULA_PREFIX = "'"
# OWASP's list, with LF and NUL (OWASP ASVS 1.2.10) and the full-width and small forms of = + - @
FORMULA_STARTS = frozenset("=+-@\t\r\n\0" "＝＋－＠" "﹦﹢﹣﹫")  # fmt: skip
DATE_FORMAT = "%Y-%m-%d"


def starts_a_formula(text: str) -> bool:
    """Whether a spreadsheet could read ``text`` as a formula."""
    return text[:1] in FORMULA_STARTS or text.lstrip()[:1] in FORMULA_STARTS  # "" is not in the set


def neutralize_cell(value: object) -> object:
    """``'`` + ``value`` for text that could start a formula; anything else unchanged."""
    if isinstance(value, str) and starts_a_formula(value):
        return FORMULA_PREFIX + value
    return value


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a formula; numeric, date and boolean columns,
    and non-text values in mixed columns, untouched."""
    out = frame.copy()
    for position in range(out.shape[1]):
        column = out.iloc[:, position]
        if pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype):
            out.isetitem(position, column.map(neutralize_cell, na_action="ignore"))
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> int:
    """Write ``frame`` to ``path`` as CSV for spreadsheets (header, no index, dates as YYYY-MM-DD) with
    formula-like text neutralized; returns the rows written.

    Every CSV the project hands to people goes through here: ``seg-pipeline export`` today, and the
    planned action exports (lists for the CRM and marketing tools) must call this function too rather
    than ``DataFrame.to_csv``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    neutralize_formulas(frame).to_csv(path, index=False, date_format=DATE_FORMAT)
    return len(frame)


PARQUET_SUFFIXES = (".parquet", ".pq")
EXPORT_SUFFIXES = (".csv", *PARQUET_SUFFIXES)


def write_export(frame: pd.DataFrame, path: Path) -> int:
    """Write ``frame`` as CSV (``write_csv``: spreadsheet-safe) or Parquet, by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return write_csv(frame, path)
    if suffix in PARQUET_SUFFIXES:  # typed columns, read by tools, not spreadsheets: values stay raw
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path, index=False)
        return len(frame)
    raise ValueError(
        f"{path}: unknown export format {suffix or '(no suffix)'!r}; use one of {', '.join(EXPORT_SUFFIXES)}"
    )


def erased_customer_ids(
    customer_ids: pd.Series, erased_keys: set[str], key: bytes, id_map: pd.DataFrame | None
) -> pd.Series:
    """Which of ``customer_ids`` (published, surviving CRM ids) belong to a customer with a recorded erasure
    request: their own id, or any record merged into them (``id_map``: clean.customer_id_map's
    customer_id and surviving_customer_id), pseudonymized with ``key`` as `seg-pipeline forget` stores it.

    A request recorded after the last run is applied by the next run; until then the published tables
    still hold the customer, and an export must not hand them to a CRM or e-mail tool."""
    from seg_pipeline.cleaning.privacy import pseudonymize

    if not erased_keys:
        return pd.Series(False, index=customer_ids.index)
    erased = pseudonymize(customer_ids, key).isin(erased_keys).to_numpy(dtype=bool)
    if id_map is not None and len(id_map):
        merged = id_map[pseudonymize(id_map["customer_id"], key).isin(erased_keys).to_numpy(dtype=bool)]
        erased |= customer_ids.isin(set(merged["surviving_customer_id"])).to_numpy(dtype=bool)
    return pd.Series(erased, index=customer_ids.index)

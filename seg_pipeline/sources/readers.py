"""Read a CSV or Parquet extract, apply the column mapping and coerce it to its canonical contract.

Contract breaches raise SegPipelineError naming the file, column and rows: unreadable file, missing
required column, or a value in a required column that does not parse. Unparseable values in optional
columns become missing and are reported (count, rows, examples) so nothing is lost silently.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.contracts import PANDAS_DTYPES, SOURCE_ROW, Column, ColumnType, SourceContract

TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "1.0"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "0.0"})
SNIFF_BYTES = 64 * 1024
MAX_EXAMPLES = 5


@dataclass
class IngestReport:
    """What reading one source did, for asset metadata."""

    source: str
    path: Path | None
    format: str | None = None
    sha256: str | None = None
    delimiter: str | None = None
    rows: int = 0
    columns_absent: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # their column -> canonical
    coerced_to_null: dict[str, dict] = field(default_factory=dict)  # column -> {count, examples}
    unparseable_required: dict[str, int] = field(
        default_factory=dict
    )  # column -> rows sent on for quarantine


def empty_table(contract: SourceContract, extra: dict[str, ColumnType] | None = None) -> pd.DataFrame:
    """The typed, zero-row table of a source that is not there."""
    columns = {c.name: pd.Series(dtype=PANDAS_DTYPES[c.type]) for c in contract.columns}
    columns |= {name: pd.Series(dtype=PANDAS_DTYPES[t]) for name, t in (extra or {}).items()}
    columns["parse_errors"] = pd.Series(dtype="string")
    columns[SOURCE_ROW] = pd.Series(dtype="int64")
    return pd.DataFrame(columns)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detect_format(path: Path, configured: str | None) -> str:
    if configured:
        return configured
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def read_source(
    contract: SourceContract,
    path: Path | None,
    *,
    columns: dict[str, str] | None = None,
    fmt: str | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    extra: dict[str, ColumnType] | None = None,
    max_unparseable_share: float = 0.0,
) -> tuple[pd.DataFrame, IngestReport]:
    """Read one extract into its canonical typed table (plus ``extra`` listed columns and source_row).

    A required column whose unparseable values stay within ``max_unparseable_share`` of the rows keeps
    going: those rows carry their error in ``parse_errors`` and the clean stage quarantines them.
    More than that is a broken extract and raises, naming the rows.
    """
    extra = dict(extra or {})
    report = IngestReport(source=contract.name, path=path)
    if path is None:
        if contract.required_source:
            raise SegPipelineError(f"{contract.name}: the extract is required but no file was found")
        return empty_table(contract, extra), report
    if not path.is_file():
        raise SegPipelineError(f"{contract.name}: file not found: {path}")

    report.format = detect_format(path, fmt)
    report.sha256 = file_sha256(path)
    if report.format == "parquet":
        frame = _read_parquet(path)
    else:
        frame, report.delimiter = _read_csv(path, delimiter, encoding)

    frame = _apply_mapping(frame, contract, columns or {}, extra, path, report)
    out = {}
    errors = pd.Series(pd.NA, index=range(len(frame)), dtype="string")
    specs = [*contract.columns, *(Column(n, t) for n, t in extra.items())]
    for spec in specs:
        if spec.name not in frame.columns:
            report.columns_absent.append(spec.name)
            out[spec.name] = pd.Series(pd.array([pd.NA] * len(frame), dtype=PANDAS_DTYPES[spec.type]))
            continue
        values, bad = coerce(frame[spec.name], spec.type)
        if bad.any():
            share = bad.sum() / max(len(frame), 1)
            tolerated = spec.required and share <= max_unparseable_share
            _report_bad(spec, frame[spec.name], bad, path, report, (columns or {}).get(spec.name), tolerated)
            if tolerated:
                raw_text = _as_text(frame[spec.name]).reset_index(drop=True).str.slice(0, 80)
                message = (f"{spec.name} '" + raw_text + f"' is not a valid {spec.type}").where(
                    bad.to_numpy()
                )
                both = errors.notna() & message.notna()
                errors = errors.fillna(message)
                errors[both] = errors[both] + "; " + message[both]
        out[spec.name] = values.reset_index(drop=True)
    table = pd.DataFrame(out)
    table["parse_errors"] = errors
    table[SOURCE_ROW] = np.arange(1, len(table) + 1, dtype="int64")
    report.rows = len(table)
    return table, report


# --- file readers -----------------------------------------------------------------------------------


def _python_encoding(encoding: str) -> str:
    # utf-8-sig reads plain UTF-8 too and drops a byte-order mark if one is there
    return "utf-8-sig" if encoding.lower().replace("_", "-") in {"utf-8", "utf8"} else encoding


def _read_csv(path: Path, delimiter: str | None, encoding: str) -> tuple[pd.DataFrame, str]:
    enc = _python_encoding(encoding)
    compression = "gzip" if path.name.lower().endswith(".gz") else None
    with gzip.open(path, "rb") if compression else path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not head.strip():
        raise SegPipelineError(f"{path}: the file is empty (no header row). Expected a CSV with a header.")
    try:
        sample = head.decode(enc)
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multibyte character cut by the sample boundary
            raise _encoding_error(path, encoding) from None
        sample = head[: exc.start].decode(enc)
    if delimiter is None:
        delimiter = _sniff_delimiter(sample, path)
    header = next(csv.reader(io.StringIO(sample.splitlines()[0]), delimiter=delimiter))
    _check_header(header, path)
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=enc,
            compression=compression,
            low_memory=False,
        )
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding) from None
    except pd.errors.ParserError as exc:
        raise SegPipelineError(
            f"{path}: malformed CSV ({exc}). Delimiter used: {delimiter!r}; "
            "check quoting and the number of fields on that line."
        ) from None
    except pd.errors.EmptyDataError:
        raise SegPipelineError(f"{path}: the file is empty (no header row).") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame, delimiter


def _sniff_delimiter(sample: str, path: Path) -> str:
    lines = sample.splitlines()
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=",;\t|").delimiter
    except csv.Error:
        # a single-column file or a header-only file: fall back to the most frequent candidate
        counts = {d: lines[0].count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _check_header(header: list[str], path: Path) -> None:
    names = [h.strip().lstrip("\ufeff") for h in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        key = name.casefold()
        if not name:
            raise SegPipelineError(f"{path}: header column {position} is empty; every column needs a name.")
        if key in seen:
            raise SegPipelineError(
                f"{path}: duplicated header column {name!r} (columns {seen[key]} and {position}); "
                "rename one of them in the extract."
            )
        seen[key] = position


def _encoding_error(path: Path, encoding: str) -> SegPipelineError:
    row = _first_undecodable_row(path, _python_encoding(encoding))
    where = f" at row {row} (1 = first row after the header)" if row is not None else ""
    return SegPipelineError(
        f"{path}: not valid {encoding} text{where}. Save the extract as UTF-8 or set "
        "sources.<name>.encoding (e.g. latin-1) in the config."
    )


def _first_undecodable_row(path: Path, encoding: str) -> int | None:
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                return line_no  # line 0 is the header
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for truncated or non-Parquet files
        raise SegPipelineError(
            f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc}). "
            "Is it truncated, or a CSV with a .parquet name? Set sources.<name>.format if so."
        ) from None
    names = table.column_names
    _check_header(names, path)
    return table.to_pandas()


# --- mapping and coercion ---------------------------------------------------------------------------


def _apply_mapping(
    frame: pd.DataFrame,
    contract: SourceContract,
    mapping: dict[str, str],
    extra: dict[str, ColumnType],
    path: Path,
    report: IngestReport,
) -> pd.DataFrame:
    present = list(frame.columns)
    wanted = [*contract.column_names, *extra]
    rename: dict[str, str] = {}
    for canonical, theirs in mapping.items():
        if theirs not in present:
            raise SegPipelineError(
                f"{path}: column {theirs!r} (mapped to {canonical} by sources.{contract.name}.columns) "
                f"is not in the file. Columns found: {', '.join(present)}."
            )
        rename[theirs] = canonical
    taken = set(rename.values())
    by_fold = {c.casefold(): c for c in wanted}
    for column in present:
        if column in rename:
            continue
        canonical = by_fold.get(column.casefold())
        if canonical is not None and canonical not in taken:
            rename[column] = canonical
            taken.add(canonical)
    report.renamed = {k: v for k, v in rename.items() if k != v}
    report.ignored_columns = [c for c in present if c not in rename]

    missing = [c for c in contract.required_columns if c not in taken]
    if missing:
        raise SegPipelineError(
            f"{path}: missing required column(s) {', '.join(missing)} for {contract.name}. "
            f"Columns found: {', '.join(present)}. Map yours with "
            f"sources.{contract.name}.columns.<canonical name>: <your column>."
        )
    for group in contract.required_any:
        if not taken.intersection(group):
            raise SegPipelineError(
                f"{path}: {contract.name} needs at least one of the columns {', '.join(group)}. "
                f"Columns found: {', '.join(present)}."
            )
    missing_extra = [c for c in extra if c not in taken]
    if missing_extra:
        raise SegPipelineError(
            f"{path}: column(s) {', '.join(missing_extra)} are listed in the config (customer_attributes or "
            f"churn.explicit_column) but not in the file. Columns found: {', '.join(present)}."
        )
    return frame[list(rename)].rename(columns=rename)


def coerce(values: pd.Series, kind: ColumnType) -> tuple[pd.Series, pd.Series]:
    """Coerce to the canonical type; also return the mask of present values that did not parse."""
    if kind == "string":
        return _as_text(values), pd.Series(False, index=values.index)
    if kind == "float":
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            text = _as_text(values).str.strip()
            number = pd.to_numeric(text, errors="coerce").astype("float64")
            present = text.notna() & (text != "")
        else:
            number = values.astype("float64")
            present = values.notna()
        number = number.where(np.isfinite(number))
        return number, present & number.isna()
    if kind == "datetime":
        return parse_datetimes(values)
    if kind == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean"), pd.Series(False, index=values.index)
        text = _as_text(values).str.strip().str.lower()
        result = pd.Series(pd.NA, index=values.index, dtype="boolean")
        result[text.isin(TRUE_WORDS).fillna(False).astype(bool)] = True
        result[text.isin(FALSE_WORDS).fillna(False).astype(bool)] = False
        present = text.notna() & (text != "")
        return result, present & result.isna()
    raise ValueError(f"unknown column type {kind}")


def _as_text(values: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(values):
        # ids stored as floats by another tool: 123.0 -> "123"
        whole = values.dropna()
        if len(whole) and (whole == whole.round()).all():
            values = values.astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.strftime("%Y-%m-%d %H:%M:%S").astype("string")
    return values.astype("string")


def parse_datetimes(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """ISO 8601 first (fast); other spellings then one by one. Timezones are converted to naive UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_convert(None) if getattr(values.dt, "tz", None) is not None else values
        return out.astype("datetime64[ns]"), pd.Series(False, index=values.index)
    text = _as_text(values).str.strip()
    text = text.mask(text == "")
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    retry = text.notna() & parsed.isna()
    if retry.any():
        parsed.loc[retry] = pd.to_datetime(
            text[retry].astype(object), errors="coerce", format="mixed", utc=True
        )
    parsed = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    return parsed, text.notna() & parsed.isna()


def _report_bad(
    spec: Column,
    raw: pd.Series,
    bad: pd.Series,
    path: Path,
    report: IngestReport,
    theirs: str | None,
    tolerated: bool = False,
) -> None:
    positions = np.flatnonzero(bad.to_numpy())
    examples = [(int(i) + 1, str(raw.iloc[i])) for i in positions[:MAX_EXAMPLES]]
    listed = ", ".join(f"row {row} {value!r}" for row, value in examples)
    named = f"{spec.name!r}" + (f" (your column {theirs!r})" if theirs and theirs != spec.name else "")
    if spec.required and not tolerated:
        raise SegPipelineError(
            f"{path}: required column {named} has {len(positions)} value(s) that are not a valid "
            f"{spec.type}: {listed}{' ...' if len(positions) > MAX_EXAMPLES else ''}. "
            "Rows count from 1 after the header. Fix those rows or the column mapping "
            "(quality.max_unparseable_share sets how many such rows go to quarantine instead)."
        )
    if spec.required:
        report.unparseable_required[spec.name] = int(len(positions))
        return
    report.coerced_to_null[spec.name] = {
        "count": int(len(positions)),
        "examples": [{"row": row, "value": value} for row, value in examples],
        "rule": f"not a valid {spec.type}",
    }

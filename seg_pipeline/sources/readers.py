"""Read a CSV or Parquet extract, apply the column mapping and coerce it to its canonical contract.

Contract breaches raise SegPipelineError naming the file, column and rows: unreadable file, missing
required column, or a value in a required column that does not parse. Unparseable values in optional
columns become missing and are reported (count, rows, examples) so nothing is lost silently.

Messages and reports show a cell value by its shape only (masking.py): any cell may hold personal data,
and they end up in the run's event log and alerts. A file that changes while it is read (a copy still
being written) fails instead of giving the rows written so far.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.contracts import (
    PANDAS_DTYPES,
    PARSE_ERRORS,
    RESERVED_COLUMNS,
    SOURCE_ROW,
    Column,
    ColumnType,
    SourceContract,
)
from seg_pipeline.sources.files import FileState, file_problem, unreadable_reason
from seg_pipeline.sources.masking import for_review, shown_name, value_kind, value_shape

TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "1.0"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "0.0"})
SNIFF_BYTES = 64 * 1024
MAX_EXAMPLES = 5
VALUE_HINTS = {
    "float": " Numbers are read with a decimal point and no thousands separators (1234.50, not 1.234,50).",
    "datetime": " Dates are read as ISO 8601 (2024-06-30 14:05:00+02:00) or spelled out; 05/06/2024 is read "
    "only when other rows show the day/month order, and a time zone must be an offset or a known name.",
}
SHAPE_NOTE = "Values are shown by their shape (a letter is a or A, a digit 9), never as written."


@dataclass
class IngestReport:
    """What reading one source did, for asset metadata."""

    source: str
    path: Path | None
    format: str | None = None
    sha256: str | None = None
    delimiter: str | None = None
    rows: int = 0
    blank_rows: int = 0  # empty lines and rows with every field empty: no data, left out and counted
    columns_absent: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # their column -> canonical
    coerced_to_null: dict[str, dict] = field(default_factory=dict)  # column -> {count, examples (shapes)}
    unparseable_required: dict[str, int] = field(
        default_factory=dict
    )  # column -> rows sent on for quarantine


@dataclass(frozen=True)
class CsvShape:
    """What the record check saw: the widest record, blank records, and records spanning several lines."""

    width: int
    blank_records: int
    multiline: bool


def empty_table(contract: SourceContract, extra: dict[str, ColumnType] | None = None) -> pd.DataFrame:
    """The typed, zero-row table of a source that is not there."""
    columns = {c.name: pd.Series(dtype=PANDAS_DTYPES[c.type]) for c in contract.columns}
    columns |= {name: pd.Series(dtype=PANDAS_DTYPES[t]) for name, t in (extra or {}).items()}
    columns[PARSE_ERRORS] = pd.Series(dtype="string")
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
    problem = file_problem(path)
    if problem:
        raise SegPipelineError(f"{contract.name}: {path} {problem}.")
    _refuse_reserved(contract, columns or {}, extra, path)
    before = FileState.of(path)
    if before.size == 0:
        raise SegPipelineError(f"{path}: the file is empty (0 bytes, no header row). Re-export it.")
    try:
        table = _read_and_coerce(contract, path, report, columns or {}, fmt, delimiter, encoding, extra,
                                 max_unparseable_share)  # fmt: skip
    except SegPipelineError:
        changed = _changed_while_read(path, before)  # a file cut off mid-write breaks in many ways
        if changed:
            raise changed from None
        raise
    except PermissionError:  # not transient: the raw step must not retry it
        raise SegPipelineError(f"{path} {unreadable_reason(path)}.") from None
    changed = _changed_while_read(path, before)
    if changed:
        raise changed
    return table, report


def _read_and_coerce(
    contract: SourceContract,
    path: Path,
    report: IngestReport,
    columns: dict[str, str],
    fmt: str | None,
    delimiter: str | None,
    encoding: str,
    extra: dict[str, ColumnType],
    max_unparseable_share: float,
) -> pd.DataFrame:
    report.format = detect_format(path, fmt)
    report.sha256 = file_sha256(path)
    nested: dict[str, str] = {}
    if report.format == "parquet":
        frame, nested = _read_parquet(path)
        frame.index = pd.RangeIndex(1, len(frame) + 1)
    else:
        frame, report.delimiter, report.blank_rows = _read_csv(path, delimiter, encoding)

    frame = _apply_mapping(frame, contract, columns, extra, path, report)
    theirs_of = {canonical: theirs for theirs, canonical in report.renamed.items()}
    for canonical in frame.columns:
        theirs = theirs_of.get(canonical, canonical)
        if theirs in nested:
            raise SegPipelineError(
                f"{path}: column {_named(canonical, theirs)}: a nested Parquet column "
                f"({clip(nested[theirs], 60)}) in every row; {canonical} must be a flat value. "
                "Flatten it in the export or map a flat column with sources.<name>.columns."
            )
    source_rows = frame.index.to_numpy(dtype="int64")
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
            theirs = columns.get(spec.name)
            _report_bad(spec, frame[spec.name], bad, path, report, theirs, source_rows, tolerated)
            if tolerated:
                # the raw table keeps the value as written; this message goes to the quarantine, a review
                # table, so contact data typed into the wrong column is shown by its shape
                raw_text = _as_text(frame[spec.name]).reset_index(drop=True).str.slice(0, 80)
                raw_text = raw_text.map(for_review, na_action="ignore")
                message = (f"{spec.name} '" + raw_text + f"' is not a valid {spec.type}").where(
                    bad.to_numpy()
                )
                both = errors.notna() & message.notna()
                errors = errors.fillna(message)
                errors[both] = errors[both] + "; " + message[both]
        out[spec.name] = values.reset_index(drop=True)
    table = pd.DataFrame(out)
    table[PARSE_ERRORS] = errors
    table[SOURCE_ROW] = source_rows
    report.rows = len(table)
    return table


def _refuse_reserved(
    contract: SourceContract, mapping: dict[str, str], extra: dict[str, ColumnType], path: Path
) -> None:
    """A listed or mapped column named like one the pipeline adds would be overwritten by it: refuse it."""
    for name in [*mapping, *extra]:
        if name in RESERVED_COLUMNS:
            raise SegPipelineError(
                f"{path}: column {name!r} (listed in customer_attributes, churn.explicit_column or "
                f"sources.{contract.name}.columns) has the name of {RESERVED_COLUMNS[name]}, a column the "
                "pipeline adds itself and which would replace yours. List it under another name and map it: "
                f"sources.{contract.name}.columns: {{crm_{name}: {name}}}."
            )


def _changed_while_read(path: Path, before: FileState) -> SegPipelineError | None:
    """The error for a file that is not what it was when reading began (a copy still being written)."""
    try:
        after = FileState.of(path)
    except FileNotFoundError:
        after = None
    if after == before:
        return None
    now = "removed" if after is None else f"{after.size:,} bytes, modified again"
    return SegPipelineError(
        f"{path}: the file changed while it was read ({before.size:,} bytes when reading began, now {now}); "
        "it is probably still being written. Rerun when the copy has finished (`seg-pipeline run` waits "
        "for that: orchestration.sources_stable_seconds)."
    )


# --- file readers -----------------------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
MAX_FIELD_CHARS = 1 << 20  # a longer CSV field is an unbalanced quote or a broken export, not data
LINE_NOTE = "line 1 is the header"
CSV_HEADER, PARQUET_HEADER = "line 1 (the header)", "the Parquet schema"


def clip(value: object, limit: int = 80) -> str:
    """A value short enough for a message: long text is cut and says how long it was."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _names(columns: list[str], limit: int = 30) -> str:
    shown = ", ".join(clip(shown_name(c), 40) for c in columns[:limit])
    return shown + (f", ... ({len(columns)} columns)" if len(columns) > limit else "")


def _python_encoding(encoding: str, head: bytes = b"") -> str:
    if encoding.lower().replace("_", "-") in {"utf-8", "utf8"}:
        # a UTF-16 byte-order mark says what the file is; utf-8-sig reads plain UTF-8 and drops a UTF-8 BOM
        return "utf-16" if head.startswith(UTF16_BOMS) else "utf-8-sig"
    return encoding


def _open_binary(path: Path, compression: str | None):
    return gzip.open(path, "rb") if compression else path.open("rb")


def _read_csv(path: Path, delimiter: str | None, encoding: str) -> tuple[pd.DataFrame, str, int]:
    """The CSV as text columns plus its delimiter and the number of blank rows left out.

    Every record is checked first (field count, quoting, NUL bytes, field length) so that a broken line
    fails naming its line instead of shifting, truncating or padding values silently.
    """
    with path.open("rb") as fh:
        compression = "gzip" if fh.read(2) == GZIP_MAGIC else None  # by content: a .csv may be gzip'd
    with _open_binary(path, compression) as fh:
        head = fh.read(SNIFF_BYTES)
    if not head.strip():
        raise SegPipelineError(f"{path}: the file is empty (no header row). Expected a CSV with a header.")
    if head.startswith(PARQUET_MAGIC):
        raise SegPipelineError(
            f"{path}: a Parquet file read as CSV. Set sources.<name>.format: parquet or rename it .parquet."
        )
    enc = _python_encoding(encoding, head)
    try:
        sample = head.decode(enc)
    except UnicodeDecodeError as exc:
        sample = head[: exc.start].decode(enc)
        if exc.start < len(head) - 4:  # not just a multibyte character cut by the sample boundary
            sniffed = delimiter or (_sniff_delimiter(sample, path) if "\n" in sample else None)
            raise _encoding_error(path, encoding, compression, sniffed) from None
    lines = sample.splitlines()
    if len(lines) == 1 and len(head) == SNIFF_BYTES and not sample.endswith(("\n", "\r")):
        raise SegPipelineError(
            f"{path}: {CSV_HEADER}: malformed CSV: no line break in the first "
            f"{SNIFF_BYTES // 1024} KiB (one huge line). Check the export's format and line endings."
        )
    if delimiter is None:
        delimiter = _sniff_delimiter(sample, path)
    header = _header_fields(lines[0], delimiter)
    named = _check_header(header, path)
    if not enc.startswith("utf-16"):  # UTF-16 text is full of NUL bytes
        _check_no_nul(path, compression, header, delimiter)
    shape = _check_records(path, compression, enc, encoding, delimiter, header, named)
    names = header[:named] + [f"__unnamed_{i}" for i in range(named, max(shape.width, len(header)))]
    frame = None
    if _arrow_can_read(compression, enc, shape):
        frame = _read_regular_csv(path, names, delimiter, shape)
    if frame is None:
        frame = _read_any_csv(path, names, delimiter, enc, encoding, compression)
    if len(names) > named:
        frame = frame[names[:named]]
    # blank: every field empty, or only spaces in the first (checked on the few rows whose last is empty)
    blank = frame.iloc[:, -1].isna().to_numpy()
    if blank.any():
        candidates = frame.iloc[blank]
        first = candidates.iloc[:, 0]
        empty = candidates.iloc[:, 1:].isna().all(axis=1) & (first.isna() | first.str.strip().eq(""))
        blank[blank] = empty.to_numpy()
    frame.index = pd.RangeIndex(1, len(frame) + 1)  # the data row number, before blank rows go
    return (frame[~blank] if blank.any() else frame), delimiter, int(blank.sum())


def _read_any_csv(
    path: Path, names: list[str], delimiter: str, enc: str, encoding: str, compression: str | None
) -> pd.DataFrame:
    """pandas' parser: any encoding or compression, blank lines kept as rows of missing values."""
    try:
        return pd.read_csv(
            path,
            sep=delimiter,
            header=None,
            skiprows=1,
            names=names,
            index_col=False,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,  # blank lines keep their row number; they are dropped and counted below
            encoding=enc,
            compression=compression,
            low_memory=False,
        )
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding, compression, delimiter) from None
    except pd.errors.ParserError as exc:
        raise SegPipelineError(
            f"{path}: malformed CSV ({exc}). Delimiter used: {delimiter!r}; "
            "check quoting and the number of fields on that line."
        ) from None


def _arrow_can_read(compression: str | None, enc: str, shape: CsvShape) -> bool:
    """Arrow's reader gives the same text columns as pandas' for an uncompressed UTF-8 file whose records
    the check found regular: no blank records (Arrow would drop them and shift the row numbers after them).
    Records of different widths (trailing empty fields) make Arrow refuse the file; pandas then reads it."""
    return compression is None and enc in ("utf-8", "utf-8-sig", "ascii") and not shape.blank_records


def _read_regular_csv(path: Path, names: list[str], delimiter: str, shape: CsvShape) -> pd.DataFrame | None:
    """The records as text columns (missing where empty) through pyarrow's multithreaded reader, about five
    times faster than pandas' parser; None if Arrow refuses the file (pandas' parser then reads it)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            path,
            # a record never exceeds a block: the check caps fields at 1 MiB
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=max(1 << 24, len(names) << 21)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=shape.multiline,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), null_values=[""],
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True),
        )  # fmt: skip
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table.to_pandas()


def _sniff_delimiter(sample: str, path: Path) -> str:
    lines = sample.splitlines()
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=",;\t|").delimiter
    except csv.Error:
        # a single-column file or a header-only file: fall back to the most frequent candidate
        counts = {d: lines[0].count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _header_fields(line: str, delimiter: str) -> list[str]:
    return [h.strip().lstrip("\ufeff") for h in next(csv.reader([line], delimiter=delimiter), [])]


def _check_header(header: list[str], path: Path, where: str = CSV_HEADER) -> int:
    """Fail on an empty or duplicated column name; return how many columns are named (a trailing
    delimiter after the last name is allowed: those columns must stay empty)."""
    named = len(header)
    while named > 1 and not header[named - 1]:
        named -= 1
    contact = next(((i, name) for i, name in enumerate(header[:named], start=1) if value_kind(name)), None)
    if contact:  # a record where the header should be: say so, and show none of it
        position, name = contact
        raise SegPipelineError(
            f"{path}: {where}, column {position}: {value_shape(name)} is a value, not a column name: the file "
            f"has no header row (or a record above it). Export it with its header row. {SHAPE_NOTE}"
        )
    seen: dict[str, int] = {}
    for position, name in enumerate(header[:named], start=1):
        key = name.casefold()
        if not name:
            raise SegPipelineError(
                f"{path}: {where}, column {position}: the name is empty; every column needs a name."
            )
        if key in seen:
            raise SegPipelineError(
                f"{path}: {where}: duplicated header column {clip(shown_name(name), 40)!r} (columns "
                f"{seen[key]} and {position}; names are matched ignoring case and spaces); rename one of them "
                "in the extract."
            )
        seen[key] = position
    return named


def _check_no_nul(path: Path, compression: str | None, header: list[str], delimiter: str) -> None:
    """A NUL byte is a corrupt or binary file; the CSV parser would silently cut the value there."""
    offset, tail = 0, b""
    with _open_binary(path, compression) as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            at = block.find(b"\x00")
            if at >= 0:
                before = tail + block[:at]
                line = offset + before.count(b"\n") + 1
                text = before[before.rfind(b"\n") + 1 :].decode("latin-1")
                column = _column_at(text, header, delimiter)
                raise SegPipelineError(
                    f"{path}: line {line} ({LINE_NOTE}), column {column!r}: a NUL byte (\\x00): the file "
                    "is corrupt or not plain text. Re-export it as UTF-8 CSV."
                )
            offset += block.count(b"\n")
            tail = block[block.rfind(b"\n") + 1 :] if b"\n" in block else tail + block


def _column_at(line_start: str, header: list[str], delimiter: str) -> str:
    """The column a position on a line falls in, given the text of the line up to that position."""
    fields = next(csv.reader([line_start], delimiter=delimiter), [""])
    index = max(len(fields) - 1, 0)
    return shown_name(header[index]) if index < len(header) and header[index] else f"field {index + 1}"


def _check_records(
    path: Path,
    compression: str | None,
    enc: str,
    encoding: str,
    delimiter: str,
    header: list[str],
    named: int,
) -> CsvShape:
    """Every record has the header's fields (fields past the named columns must be empty); return what the
    records look like (widest record, blank records, records over several lines).

    Lines are physical lines of the file (line 1 is the header); a quoted line break continues a record.
    """
    previous = csv.field_size_limit(MAX_FIELD_CHARS)
    width = len(header)
    blank = 0
    multiline = False
    line = 1
    try:
        with _open_binary(path, compression) as raw, io.TextIOWrapper(raw, encoding=enc, newline="") as text:
            reader = csv.reader(text, delimiter=delimiter, strict=True)
            next(reader, None)
            line = reader.line_num + 1
            for record in reader:
                count = len(record)
                multiline = multiline or reader.line_num != line
                if not count or (count == 1 and not record[0].strip()):
                    blank += 1
                elif count != named:
                    if count < named:
                        raise SegPipelineError(
                            f"{path}: line {line} ({LINE_NOTE}): malformed CSV: {count} field(s) where the "
                            f"header has {named} (delimiter {delimiter!r}). Check the delimiter "
                            "(sources.<name>.delimiter) and the quoting on that line."
                        )
                    extra = next((i for i in range(named, count) if record[i].strip()), None)
                    if extra is not None:
                        raise SegPipelineError(
                            f"{path}: line {line} ({LINE_NOTE}), field {extra + 1}: malformed CSV: a value "
                            f"{value_shape(record[extra])} beyond the header's {named} column(s). Check the "
                            f"delimiter and the quoting on that line. {SHAPE_NOTE}"
                        )
                    width = max(width, count)
                line = reader.line_num + 1
    except UnicodeDecodeError:
        raise _encoding_error(path, encoding, compression, delimiter) from None
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            column = _long_field_column(path, compression, enc, delimiter, header, line)
            raise SegPipelineError(
                f"{path}: line {line} ({LINE_NOTE}), column {column!r}: malformed CSV: a field longer than "
                f"{MAX_FIELD_CHARS:,} characters (1 MiB): a quote that is never closed, or not a CSV "
                "extract. Check that line."
            ) from None
        if "unexpected end of data" in str(exc):
            raise SegPipelineError(
                f"{path}: line {line} ({LINE_NOTE}): malformed CSV: a quoted field starts on this line and "
                "is never closed (unterminated quote). Check the quotes on that line."
            ) from None
        raise SegPipelineError(
            f"{path}: line {line} ({LINE_NOTE}): malformed CSV ({exc}). Delimiter used: {delimiter!r}; "
            "check the quoting on that line."
        ) from None
    finally:
        csv.field_size_limit(previous)
    return CsvShape(width, blank, multiline)


def _long_field_column(
    path: Path, compression: str | None, enc: str, delimiter: str, header: list[str], line: int
) -> str:
    """The column of the over-long field in the record that starts on ``line`` (an error path only)."""
    previous = csv.field_size_limit(sys.maxsize)
    try:
        with _open_binary(path, compression) as raw, io.TextIOWrapper(raw, encoding=enc, newline="") as text:
            reader = csv.reader(text, delimiter=delimiter)
            start = 1
            for record in reader:
                if start == line:
                    index = next((i for i, f in enumerate(record) if len(f) > MAX_FIELD_CHARS), 0)
                    named = index < len(header) and header[index]
                    return shown_name(header[index]) if named else f"field {index + 1}"
                start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError):
        pass
    finally:
        csv.field_size_limit(previous)
    return "unknown"


def _encoding_error(
    path: Path, encoding: str, compression: str | None = None, delimiter: str | None = None
) -> SegPipelineError:
    where = _first_undecodable(path, encoding, compression, delimiter)
    return SegPipelineError(
        f"{path}: {where}not valid {encoding} text. Save the extract as UTF-8 or set "
        "sources.<name>.encoding (e.g. latin-1) in the config."
    )


def _first_undecodable(path: Path, encoding: str, compression: str | None, delimiter: str | None) -> str:
    """'line N (...), column 'x', byte 0x..: ' for the first line that does not decode, else ''."""
    enc = _python_encoding(encoding)
    with _open_binary(path, compression) as fh:
        header: list[str] = []
        for line_no, line in enumerate(fh, start=1):
            try:
                text = line.decode(enc)
            except UnicodeDecodeError as exc:
                before = line[: exc.start].decode("latin-1")
                column = _column_at(before, header, delimiter) if delimiter and header else None
                named = f", column {column!r}" if column else ""
                return f"line {line_no} ({LINE_NOTE}){named}, byte 0x{line[exc.start]:02x}: "
            if line_no == 1 and delimiter:
                header = _header_fields(text, delimiter)
    return ""


def _read_parquet(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """The Parquet file as a frame, and its nested (struct, list, map) columns with their types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != PARQUET_MAGIC:
        looks = "it starts like text" if magic.isascii() else "it does not start with PAR1"
        raise SegPipelineError(
            f"{path}: not a readable Parquet file: {looks}. Is it a CSV with a .parquet name? "
            "Set sources.<name>.format: csv or rename it."
        )
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for truncated or corrupt files
        raise SegPipelineError(
            f"{path}: not a readable Parquet file: truncated or corrupt ({type(exc).__name__}: "
            f"{clip(exc, 200)}). Re-export it; the file must be complete."
        ) from None
    with parquet:
        _check_header(parquet.schema_arrow.names, path, PARQUET_HEADER)
        try:
            table = parquet.read()
        except Exception as exc:
            raise SegPipelineError(
                f"{path}: not a readable Parquet file: its data is corrupt ({type(exc).__name__}: "
                f"{clip(exc, 200)}). Re-export it."
            ) from None
    nested = {f.name: str(f.type) for f in table.schema if pa.types.is_nested(f.type)}
    # keep timestamps in their own unit: a date beyond 2262 must not overflow nanoseconds here
    return table.to_pandas(coerce_temporal_nanoseconds=False), nested


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
                f"is not in the file. Columns found: {_names(present)}."
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

    where = PARQUET_HEADER if report.format == "parquet" else CSV_HEADER
    missing = [c for c in contract.required_columns if c not in taken]
    if missing:
        raise SegPipelineError(
            f"{path}: {where}: missing required column(s) {', '.join(missing)} for {contract.name}. "
            f"Columns found: {_names(present)}.{_delimiter_hint(present, report.delimiter)} Map yours with "
            f"sources.{contract.name}.columns.<canonical name>: <your column>."
        )
    for group in contract.required_any:
        if not taken.intersection(group):
            raise SegPipelineError(
                f"{path}: {where}: {contract.name} needs at least one of the columns "
                f"{', '.join(group)}. Columns found: {_names(present)}.{_delimiter_hint(present, report.delimiter)}"
            )
    missing_extra = [c for c in extra if c not in taken]
    if missing_extra:
        raise SegPipelineError(
            f"{path}: column(s) {', '.join(missing_extra)} are listed in the config (customer_attributes or "
            f"churn.explicit_column) but not in the file. Columns found: {_names(present)}."
        )
    return frame[list(rename)].rename(columns=rename)


def _named(canonical: str, theirs: str | None) -> str:
    return f"{canonical!r}" + (
        f" (your column {clip(theirs, 40)!r})" if theirs and theirs != canonical else ""
    )


def _delimiter_hint(present: list[str], delimiter: str | None) -> str:
    """When the header reads as one column holding another delimiter, say so."""
    if delimiter is None or len(present) != 1:
        return ""
    other = next((d for d in ",;\t|" if d != delimiter and d in present[0]), None)
    return (
        f" The header reads as one column split by {other!r}, not by {delimiter!r}: "
        "fix sources.<name>.delimiter (or remove it to sniff)."
        if other
        else ""
    )


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
    """ISO 8601 first (fast), then numeric day/month dates, then other spellings. Timezones are converted
    to naive UTC. A value that cannot be read without guessing does not parse: a date outside what
    pandas holds (1677-2262), an unknown time-zone name, no year (10:00 would be today), or 05/06/2024
    when no other row of the column shows whether the day or the month comes first."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = values.dt.tz_convert(None) if getattr(values.dt, "tz", None) is not None else values
        held = out.isna() | out.between(pd.Timestamp.min, pd.Timestamp.max)
        return out.where(held).astype("datetime64[ns]"), ~held
    text = _as_text(values).str.strip()
    text = text.mask(text == "")
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    retry = text.notna() & parsed.isna()
    if retry.any():
        parsed.loc[retry] = _parse_other_datetimes(text[retry])
    parsed = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    return parsed, text.notna() & parsed.isna()


DAY_MONTH_YEAR = r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4}|\d{2})(?![\d./-])(.*)$"


def _parse_other_datetimes(text: pd.Series) -> pd.Series:
    parts = text.str.extract(DAY_MONTH_YEAR)
    numeric = parts[0].notna()
    text = text.copy()
    if numeric.any():
        first, second, year = (parts.loc[numeric, i].astype(int) for i in range(3))
        year = year.where(year >= 100, year + np.where(year < 70, 2000, 1900))  # POSIX %y
        day_first, month_first = bool((first > 12).any()), bool((second > 12).any())
        both_small = (first <= 12) & (second <= 12)
        month_leads = (second > 12) | (both_small & month_first & ~day_first)
        ambiguous = both_small & (first != second) & (day_first == month_first)
        day, month = first.where(~month_leads, second), second.where(~month_leads, first)
        iso = (
            year.astype(str).str.zfill(4) + "-" + month.astype(str).str.zfill(2) + "-"
            + day.astype(str).str.zfill(2) + parts.loc[numeric, 3]
        )  # fmt: skip
        text.loc[numeric] = iso.mask(ambiguous)
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    spelled = text.notna() & parsed.isna() & text.str.contains(r"\d{4}", regex=True)
    if spelled.any():
        parsed.loc[spelled] = _parse_spelled(text[spelled])
    return parsed


def _parse_spelled(text: pd.Series) -> pd.Series:
    """dateutil's spellings (3 Jun 2024, June 3, 2024 10:00 PM); a time-zone name it does not know is an
    error here, not dropped (which would read the time as UTC)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parsed = pd.to_datetime(text.astype(object), errors="coerce", format="mixed", utc=True)
    if not any("timezone" in str(w.message).lower() for w in caught):
        return parsed
    out = {}
    for value in text.unique():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                one = pd.Series([value], dtype=object)
                out[value] = pd.to_datetime(one, format="mixed", utc=True).iloc[0]
            except (ValueError, OverflowError, Warning):
                out[value] = pd.NaT
    return pd.to_datetime(text.map(out), utc=True)


def _report_bad(
    spec: Column,
    raw: pd.Series,
    bad: pd.Series,
    path: Path,
    report: IngestReport,
    theirs: str | None,
    source_rows: np.ndarray,
    tolerated: bool = False,
) -> None:
    positions = np.flatnonzero(bad.to_numpy())
    examples = [(int(source_rows[i]), value_shape(raw.iloc[i])) for i in positions[:MAX_EXAMPLES]]
    listed = ", ".join(f"row {row} {shape}" for row, shape in examples)
    named = _named(spec.name, theirs)
    if spec.required and not tolerated:
        raise SegPipelineError(
            f"{path}: required column {named} has {len(positions)} value(s) that are not a valid "
            f"{spec.type}: {listed}{' ...' if len(positions) > MAX_EXAMPLES else ''}. "
            f"Rows count from 1 after the header. {SHAPE_NOTE}{VALUE_HINTS.get(spec.type, '')} Fix those rows "
            "or the column mapping (quality.max_unparseable_share sets how many such rows go to quarantine "
            "instead)."
        )
    if spec.required:
        report.unparseable_required[spec.name] = int(len(positions))
        return
    report.coerced_to_null[spec.name] = {
        "count": int(len(positions)),
        "examples": [{"row": row, "value_shape": shape} for row, shape in examples],
        "rule": f"not a valid {spec.type}",
    }

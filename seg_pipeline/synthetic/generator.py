"""Synthetic company: five messy extracts plus a truth/ folder, simulated in customer chunks and streamed
to disk so a million customers never sit in memory at once.

Behaviour is simulated in 30-day periods: each customer has a planted segment, a lifecycle (new,
growing, mature, declining), an engagement level that drives orders, web sessions, email opens and
support tickets, and a churn hazard that rises with low engagement, bad support experiences and
unsubscribes. Churn is simulated FUTURE_DAYS past as_of so truth/ also holds churn still to come;
no event after as_of is written except the deliberately injected future dates.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from seg_pipeline.synthetic import lexicon as lx
from seg_pipeline.synthetic.segments import LIFECYCLE_SIGNUP_DAYS, LIFECYCLE_WEIGHTS, LIFECYCLES, SEGMENTS

if TYPE_CHECKING:
    from seg_pipeline.synthetic.campaign import CampaignPlan

CHUNK_SIZE = 20_000  # fixed: the output of a seed must not depend on how it is chunked
PROGRESS_PARTS = 12  # progress(done, total) calls per chunk: 1 setup + 5 tables built + 5 written + 1
PERIOD_S = 30 * 86_400
FUTURE_DAYS = 180
DAY_S = 86_400
SOURCES = ("crm_customers", "orders", "web_events", "support_tickets", "email_events")


@dataclass(frozen=True)
class MessinessRates:
    """Share of rows (or customers) that get each kind of injected problem."""

    duplicate_customers: float = 0.03  # customers with a second CRM record (email/phone/company variants)
    legal_form_variants: float = 0.1  # company names written with a non-canonical legal form
    identity_typos: float = (
        0.35  # duplicate records with a typo or an unlisted variation (name/email/company)
    )
    shared_households: float = 0.01  # customers sharing a phone and surname with another (must not merge)
    missing_values: float = 0.03  # empty optional fields
    amount_outliers: float = 0.002
    negative_amounts: float = 0.003
    invalid_dates: float = 0.002  # impossible or unparseable dates
    future_dates: float = 0.001  # dated after as_of
    orphan_events: float = 0.002  # events whose customer_id is not in the CRM
    stale_records: float = 0.03  # CRM records not updated for years
    anonymous_visitors: float = 0.25  # customers who browse anonymously before identifying by email
    unlinked_contacts: float = 0.08  # tickets / email events carrying only an email or phone

    def scaled(self, factor: float) -> MessinessRates:
        return MessinessRates(**{k: min(1.0, v * factor) for k, v in asdict(self).items()})

    def with_overrides(self, overrides: dict[str, float]) -> MessinessRates:
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise ValueError(
                f"unknown messiness rate {sorted(unknown)[0]!r}; known: {', '.join(asdict(self))}"
            )
        bad = {k: v for k, v in overrides.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(
                f"rate {next(iter(bad))!r} must be between 0 and 1, got {next(iter(bad.values()))}"
            )
        return replace(self, **overrides)


@dataclass(frozen=True)
class GeneratorConfig:
    customers: int
    seed: int = 42
    as_of: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    format: Literal["csv", "parquet"] = "csv"
    history_days: int = 730
    rates: MessinessRates = field(default_factory=MessinessRates)


@dataclass
class GenerationSummary:
    out_dir: Path
    rows: dict[str, int]
    anomalies: dict[str, int]
    duplicates: int
    files: dict[str, Path]


# --- ids and text helpers ---------------------------------------------------------------------------

DUPLICATE_BASE = 1 << 30
ORPHAN_BASE = 1 << 31


def customer_id(index: int) -> str:
    """A bijection of the index onto 10 digits, so ids look unordered but never collide."""
    return f"C{(index * 2654435761 + 97) % 4294967296:010d}"


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ø": "o", "'": "", " ": ""})


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_FOLD)).encode("ascii", "ignore").decode()
    return folded.lower()


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def render_phone(cc: str, national: str, style: int) -> str:
    """One phone number in one of the formats CRMs accumulate (style 0 is E.164 with spaces)."""
    groups = " ".join(national[i : i + 3] for i in range(0, len(national), 3))
    return (
        f"+{cc} {groups}",
        f"00{cc}{national}",
        groups,
        f"+{cc}-{national[:3]}-{national[3:6]}-{national[6:]}",
        f"(+{cc}) {national}",
        f"+{cc}{national}",
    )[style]


def _email_variant(email: str, style: int) -> str:
    local, _, domain = email.partition("@")
    return (
        email.upper(),
        f"  {email} ",
        f"{local.title()}@{domain.upper()}",
        f" {local.capitalize()}@{domain}",
    )[style % 4]


_TYPO_KINDS = ("swap", "drop", "double", "replace")
_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"
_DOMAIN_TYPOS = {"gmail.com": "gmial.com", "outlook.com": "outlok.com", "yahoo.com": "yaho.com",
                 "icloud.com": "iclod.com", "proton.me": "protonmail.com", "gmx.de": "gmx.net"}  # fmt: skip


def _typo(text: str, rng: np.random.Generator) -> str:
    """One keyboard slip in a word of ``text``: two letters swapped, one dropped, doubled or replaced."""
    letters = [i for i, ch in enumerate(text) if ch.isalpha()]
    if len(letters) < 4:
        return text
    at = letters[int(rng.integers(1, len(letters) - 1))]
    kind = _TYPO_KINDS[int(rng.integers(0, len(_TYPO_KINDS)))]
    if kind == "swap" and text[at + 1 : at + 2].isalpha():
        return text[:at] + text[at + 1] + text[at] + text[at + 2 :]
    if kind == "drop":
        return text[:at] + text[at + 1 :]
    if kind == "double":
        return text[:at] + text[at] + text[at:]
    return text[:at] + _NEIGHBOURS[int(rng.integers(0, len(_NEIGHBOURS)))] + text[at + 1 :]


def _valid_national(cc: str, digits: str, prefix: str, rng: np.random.Generator, tries: int = 30) -> str:
    """``digits`` when libphonenumber accepts +cc digits as a number, else another draw with the same
    prefix: real CRMs mostly hold numbers that exist. Validity is looked up once per leading digits."""
    free = len(digits) - len(prefix)
    for _ in range(tries):
        key = (cc, digits[: len(prefix) + 3])
        if key not in _VALID_LEADS:
            import phonenumbers

            _VALID_LEADS[key] = phonenumbers.is_valid_number(phonenumbers.parse(f"+{cc}{digits}"))
        if _VALID_LEADS[key]:
            return digits
        digits = prefix + "".join(str(d) for d in rng.integers(0, 10, free))
    return digits


_VALID_LEADS: dict[tuple[str, str], bool] = {}


def _choice_index(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw: one option index per row, from the probability row ``probs[rows]``."""
    cum = np.cumsum(probs, axis=1)[rows]
    u = rng.random(len(rows))[:, None]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)


# --- the simulation of one chunk --------------------------------------------------------------------


class _Chunk:
    """Simulates ``n`` customers starting at global index ``start`` and returns their tables."""

    def __init__(self, cfg: GeneratorConfig, chunk_no: int, start: int, n: int, counters: dict[str, int]):
        self.cfg = cfg
        self.rates = cfg.rates
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, chunk_no]))
        # separate streams, so adding identity noise leaves every other drawn value of a seed unchanged
        self.phone_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, chunk_no, 1]))
        self.noise_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, chunk_no, 2]))
        self.start = start
        self.n = n
        self.counters = counters
        self.as_of_end = int(dt.datetime.combine(cfg.as_of, dt.time(23, 59, 59), tzinfo=dt.UTC).timestamp())
        self.t0 = self.as_of_end + 1 - cfg.history_days * DAY_S
        # campaign.py sets this to the churn of the world with a retention campaign (kept customers stay),
        # after the tables are built; only truth/customers.csv reads it, so no main-stream draw depends on it
        self.world_churn_ts: np.ndarray | None = None

    # customers ------------------------------------------------------------------------------------
    def customers(self) -> None:
        rng, n = self.rng, self.n
        self.seg = rng.choice(len(SEGMENTS), n, p=[s.weight for s in SEGMENTS])
        self.life = rng.choice(len(LIFECYCLES), n, p=LIFECYCLE_WEIGHTS)
        lo = np.array([LIFECYCLE_SIGNUP_DAYS[lc][0] for lc in LIFECYCLES])[self.life]
        hi = np.array([LIFECYCLE_SIGNUP_DAYS[lc][1] for lc in LIFECYCLES])[self.life]
        self.signup = (self.as_of_end - rng.uniform(lo, hi) * DAY_S).astype(np.int64)
        self.country = rng.choice(len(lx.COUNTRIES), n, p=lx.COUNTRY_WEIGHTS)
        self.order_mult = rng.lognormal(0, 0.3, n)
        self.value_mult = rng.lognormal(0, 0.2, n)
        self.web_mult = rng.lognormal(0, 0.35, n)
        self.consent_marketing = rng.random(n) < 0.8
        self.consent_profiling = rng.random(n) > 0.04
        declining = np.array(LIFECYCLES)[self.life] == "declining"
        self.decline_start = np.where(declining, self.as_of_end - rng.uniform(60, 300, n) * DAY_S, np.inf)
        self.ids = np.array([customer_id(self.start + i) for i in range(n)], dtype=object)

    # behaviour --------------------------------------------------------------------------------------
    def simulate(self) -> None:
        rng, n, cfg = self.rng, self.n, self.cfg
        seg = self.seg
        S = SEGMENTS
        orders_rate = np.array([s.orders_per_month for s in S])[seg] * self.order_mult
        web_rate = np.array([s.web_sessions_per_month for s in S])[seg] * self.web_mult
        ticket_rate = np.array([s.tickets_per_month for s in S])[seg]
        hazard0 = np.array([s.churn_hazard for s in S])[seg]
        open_rate = np.array([s.email_open_rate for s in S])[seg]
        click_rate = np.array([s.email_click_rate for s in S])[seg]
        satisfaction = np.array([s.satisfaction for s in S])[seg]
        value = np.array([s.order_value for s in S])[seg] * self.value_mult
        life_names = np.array(LIFECYCLES)[self.life]

        churn_ts = np.full(n, np.inf)
        frustration = np.zeros(n)
        unsubscribed = np.zeros(n, dtype=bool)
        noise = rng.normal(0, 0.1, n)
        out: dict[str, list] = {k: [] for k in ("orders", "sessions", "tickets", "email")}
        n_periods = math.ceil((cfg.history_days + FUTURE_DAYS) / 30)

        # A CRM customer is someone who bought once: the converting order comes within 3 days of signup.
        who = np.flatnonzero(self.signup >= self.t0)
        ts = (self.signup[who] + rng.random(len(who)) * 3 * DAY_S).astype(np.int64)
        out["orders"].append((who, ts, value[who] * rng.lognormal(0, 0.45, len(who))))

        for p in range(n_periods):
            start = self.t0 + p * PERIOD_S
            end = start + PERIOD_S
            tenure_days = (start - self.signup) / DAY_S
            level = np.ones(n)
            level = np.where(life_names == "growing", 0.45 + 0.75 * np.clip(tenure_days / 270, 0, 1), level)
            level = np.where(life_names == "new", 0.7 + 0.3 * np.clip(tenure_days / 60, 0, 1), level)
            decay = np.clip((start - self.decline_start) / PERIOD_S, 0, None)
            level = level * 0.7**decay
            noise = 0.7 * noise + rng.normal(0, 0.12, n)
            engagement = level * np.exp(noise)

            # churn is decided first, so the period's activity stops at the churn moment
            alive = np.isinf(churn_ts) & (self.signup < end)
            hazard = hazard0 * np.exp(
                3.5 * np.clip(1 - engagement, 0, None) + 0.6 * np.minimum(frustration, 3) + 0.7 * unsubscribed
            )
            hazard = np.minimum(hazard * np.where(tenure_days < 90, 1.6, 1.0), 0.6)
            active_from = np.maximum(start, self.signup)
            churns = alive & (rng.random(n) < hazard * np.clip((end - active_from) / PERIOD_S, 0, 1))
            churn_ts = np.where(churns, active_from + rng.random(n) * (end - active_from), churn_ts)

            active_to = np.minimum(end, churn_ts)
            exposure = np.clip((active_to - active_from) / PERIOD_S, 0, 1)

            def draw(rate: np.ndarray, lo=active_from, hi=active_to) -> tuple[np.ndarray, np.ndarray]:
                """Poisson event counts per customer, each at a uniform moment of their active window."""
                who = np.repeat(np.arange(n), rng.poisson(np.clip(rate, 0, None)))
                return who, (lo[who] + rng.random(len(who)) * (hi - lo)[who]).astype(np.int64)

            who, ts = draw(orders_rate * engagement * exposure)
            out["orders"].append((who, ts, value[who] * rng.lognormal(0, 0.45, len(who))))

            who, ts = draw(web_rate * engagement * exposure)
            cancel_p = 0.02 + 0.2 * np.minimum(frustration, 2)[who] / 2 + 0.15 * (decay[who] > 0)
            out["sessions"].append((who, ts, cancel_p))

            ticket_mult = (0.6 + 0.5 * np.minimum(frustration, 3)) * (1.3 - 0.3 * np.minimum(engagement, 1))
            who, ts = draw(ticket_rate * ticket_mult * exposure)
            sat = np.clip(np.round(rng.normal(satisfaction[who] - 0.5 * frustration[who], 0.9)), 1, 5)
            out["tickets"].append((who, ts, sat))
            bad = np.bincount(who[sat <= 2], minlength=n)
            frustration = 0.6 * frustration + bad

            # campaigns go to every consenting, subscribed customer; the company cannot see churn
            send_from = np.maximum(start, self.signup)
            gets = self.consent_marketing & ~unsubscribed & (self.signup < end) & (rng.random(n) < 0.35)
            who = np.flatnonzero(gets)
            sent = (send_from[who] + rng.random(len(who)) * (end - send_from[who])).astype(np.int64)
            alive_at_send = sent < churn_ts[who]
            opened = rng.random(len(who)) < open_rate[who] * np.minimum(engagement[who], 1.3) * np.where(
                alive_at_send, 1.0, 0.03
            )
            clicked = opened & (rng.random(len(who)) < click_rate[who])
            unsub_p = 0.004 + 0.03 * np.clip(1 - engagement[who], 0, None) + 0.01 * frustration[who]
            unsub = alive_at_send & (rng.random(len(who)) < unsub_p)
            unsubscribed[who[unsub]] = True
            out["email"].append((who, sent, opened, clicked, unsub, p))

        self.churn_ts = churn_ts
        self.raw = out

    # tables ---------------------------------------------------------------------------------------
    def plan_duplicates(self) -> None:
        """Ids events point at: customers, then their duplicate records, then orphans (added later)."""
        rng, n = self.rng, self.n
        n_dup = rng.binomial(n, self.rates.duplicate_customers)
        self.dup_of = np.sort(rng.choice(n, n_dup, replace=False))
        base = DUPLICATE_BASE + self.counters["duplicates"]
        self.dup_ids = np.array([customer_id(base + k) for k in range(n_dup)], dtype=object)
        self.counters["duplicates"] += n_dup
        self.dup_signup = np.minimum(
            self.signup[self.dup_of] + rng.uniform(30, 400, n_dup) * DAY_S, self.as_of_end - DAY_S
        ).astype(np.int64)
        self.dup_slot = np.full(n, -1)
        self.dup_slot[self.dup_of] = np.arange(n_dup)

    def _event_ids(self, who: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """customer_id per event; a share of a duplicated customer's later events sit on the duplicate."""
        ids = self.ids[who]
        if not len(self.dup_ids):
            return ids
        slot = self.dup_slot[who]
        moved = (slot >= 0) & (ts >= self.dup_signup[np.maximum(slot, 0)]) & (self.rng.random(len(who)) < 0.3)
        ids[moved] = self.dup_ids[slot[moved]]
        return ids

    def _orphans(self, frame: pd.DataFrame, column: str = "customer_id") -> None:
        mask = (self.rng.random(len(frame)) < self.rates.orphan_events) & frame[column].notna().to_numpy()
        k = int(mask.sum())
        base = ORPHAN_BASE + self.counters["orphans"]
        self.counters["orphans"] += k
        frame.loc[mask, column] = [customer_id(base + i) for i in range(k)]
        _flag(frame, mask, "orphan_id", column)

    def _future(self, frame: pd.DataFrame, column: str) -> None:
        mask = self.rng.random(len(frame)) < self.rates.future_dates
        shift = self.rng.uniform(1, 365, int(mask.sum())) * DAY_S
        frame.loc[mask, column] = self.as_of_end + shift.astype(np.int64)
        _flag(frame, mask, "future_date", column)

    def _missing(self, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
        for column in columns:
            mask = (self.rng.random(len(frame)) < self.rates.missing_values) & frame[
                column
            ].notna().to_numpy()
            frame.loc[mask, column] = None
            _flag(frame, mask, "missing_value", column)

    def orders(self) -> pd.DataFrame:
        rng = self.rng
        who, ts, amount = (np.concatenate(parts) for parts in zip(*self.raw["orders"], strict=True))
        keep = ts <= self.as_of_end
        who, ts, amount = who[keep], ts[keep], amount[keep]
        seg = self.seg[who]
        channel_p = np.array([s.channel_mix for s in SEGMENTS])
        category_p = np.array([s.category_mix for s in SEGMENTS])
        frame = pd.DataFrame(
            {
                "order_id": None,
                "customer_id": self._event_ids(who, ts),
                "order_date": ts,
                "amount": np.round(amount, 2),
                "channel": np.array(lx.CHANNELS, dtype=object)[_choice_index(rng, channel_p, seg)],
                "product_category": np.array(lx.CATEGORIES, dtype=object)[
                    _choice_index(rng, category_p, seg)
                ],
                "_anomaly": None,
            }
        )
        self._orphans(frame)
        mask = rng.random(len(frame)) < self.rates.missing_values * 0.1
        frame.loc[mask, "customer_id"] = None
        _flag(frame, mask, "missing_required", "customer_id")
        self._missing(frame, ("channel", "product_category"))
        mask = rng.random(len(frame)) < self.rates.amount_outliers
        frame.loc[mask, "amount"] = np.round(
            frame.loc[mask, "amount"] * rng.uniform(50, 500, int(mask.sum())), 2
        )
        _flag(frame, mask, "amount_outlier", "amount")
        mask = rng.random(len(frame)) < self.rates.negative_amounts
        frame.loc[mask, "amount"] = -frame.loc[mask, "amount"].abs()
        _flag(frame, mask, "negative_amount", "amount")
        self._future(frame, "order_date")
        mask = rng.random(len(frame)) < self.rates.invalid_dates
        frame.loc[mask, "order_date"] = int(dt.datetime(1900, 1, 1, tzinfo=dt.UTC).timestamp())
        _flag(frame, mask, "invalid_date", "order_date")
        frame = frame.sort_values("order_date", kind="stable", ignore_index=True)
        start = self.counters["orders"]
        self.counters["orders"] += len(frame)
        frame["order_id"] = [f"O{start + i:09d}" for i in range(len(frame))]
        return _timestamps(frame, ("order_date",))

    def web_events(self) -> pd.DataFrame:
        rng = self.rng
        who, start, cancel_p = (np.concatenate(parts) for parts in zip(*self.raw["sessions"], strict=True))
        keep = start <= self.as_of_end
        who, start, cancel_p = who[keep], start[keep], cancel_p[keep]
        session_no = np.arange(len(who)) + self.counters["sessions"]
        self.counters["sessions"] += len(who)
        pages = 1 + rng.poisson(0.6, len(who))
        row_session = np.repeat(np.arange(len(who)), pages)
        step = np.concatenate([np.arange(k) for k in pages]) if len(pages) else np.zeros(0, dtype=int)
        ts = start[row_session] + (step * rng.uniform(20, 300, len(row_session))).astype(np.int64)
        page = np.array(lx.PAGES, dtype=object)[rng.integers(0, len(lx.PAGES), len(row_session))]
        page[rng.random(len(row_session)) < cancel_p[row_session]] = lx.CANCEL_PAGE
        w = who[row_session]

        cookie = np.array([f"anon-{x:012x}" for x in rng.integers(0, 1 << 48, self.n)], dtype=object)
        anonymous_first = rng.random(self.n) < self.rates.anonymous_visitors
        span_end = np.minimum(self.churn_ts, self.as_of_end)
        span_start = np.maximum(self.signup, self.t0)
        identify_at = (
            span_start + rng.uniform(0.1, 0.9, self.n) * np.clip(span_end - span_start, 0, None)
        ).astype(np.int64)
        anonymous = anonymous_first[w] & (ts < identify_at[w])
        ids = self._event_ids(w, ts)
        ids[anonymous] = None
        self.cookie, self.page_views = cookie, (w, ts)  # for campaign.py: kept customers' sessions and labels
        frame = pd.DataFrame(
            {
                "ts": ts,
                "customer_id": ids,
                "email": None,
                "anonymous_id": cookie[w],
                "event_type": "page_view",
                "page": page,
                "session_id": np.array([f"S{x:010d}" for x in session_no], dtype=object)[row_session],
                "_anomaly": None,
            }
        )
        # one identify event per visitor who browsed anonymously: the email links the cookie to the customer
        identified = np.unique(w[anonymous])
        emails = self.emails[identified].copy()
        restyle = rng.random(len(identified)) < 0.3
        emails[restyle] = [
            _email_variant(e, k)
            for e, k in zip(emails[restyle], rng.integers(0, 4, restyle.sum()), strict=True)
        ]
        identify = pd.DataFrame(
            {
                "ts": identify_at[identified],
                "customer_id": None,
                "email": emails,
                "anonymous_id": cookie[identified],
                "event_type": "identify",
                "page": "/account",
                "session_id": None,
                "_anomaly": None,
            }
        )
        # visitors who never become customers
        n_prospects = int(len(who) * 0.08)
        p_ts = rng.integers(self.t0, self.as_of_end, n_prospects)
        prospects = pd.DataFrame(
            {
                "ts": p_ts,
                "customer_id": None,
                "email": None,
                "anonymous_id": [f"anon-{x:012x}" for x in rng.integers(0, 1 << 48, n_prospects)],
                "event_type": "page_view",
                "page": np.array(lx.PAGES, dtype=object)[rng.integers(0, 3, n_prospects)],
                "session_id": [f"P{x:010d}" for x in rng.integers(0, 10**10, n_prospects)],
                "_anomaly": None,
            }
        )
        self.identities = pd.DataFrame(
            {
                "anonymous_id": cookie,
                "customer_id": self.ids,
                "identified_by_email": anonymous_first,
                "identify_ts": np.where(anonymous_first, identify_at, 0),
            }
        )
        frame = pd.concat([frame, identify, prospects], ignore_index=True)
        self._orphans(frame)
        self._missing(frame, ("page",))
        self._future(frame, "ts")
        frame = frame.sort_values("ts", kind="stable", ignore_index=True)
        return _timestamps(frame, ("ts",))

    def support_tickets(self) -> pd.DataFrame:
        rng = self.rng
        who, ts, sat = (np.concatenate(parts) for parts in zip(*self.raw["tickets"], strict=True))
        keep = ts <= self.as_of_end
        who, ts, sat = who[keep], ts[keep], sat[keep]
        topic_p = np.array([s.topic_mix for s in SEGMENTS])
        topic = np.array(lx.TICKET_TOPICS, dtype=object)[_choice_index(rng, topic_p, self.seg[who])]
        hours = rng.lognormal(math.log(20), 1.0, len(who)) * np.where(sat <= 2, 2.5, 1.0)
        resolved = ts + (hours * 3600).astype(np.int64)
        open_ticket = (resolved > self.as_of_end) | (rng.random(len(who)) < 0.03)
        resolved_text = pd.Series(
            pd.to_datetime(resolved, unit="s").strftime("%Y-%m-%d %H:%M:%S"), dtype=object
        )
        resolved_text[open_ticket] = None
        satisfaction = np.where(rng.random(len(who)) < 0.35, np.nan, sat)
        frame = pd.DataFrame(
            {
                "ticket_id": None,
                "customer_id": self._event_ids(who, ts),
                "email": None,
                "phone": None,
                "created_at": ts,
                "topic": topic,
                "channel": np.array(lx.TICKET_CHANNELS, dtype=object)[rng.integers(0, 3, len(who))],
                "resolved_at": resolved_text,
                "satisfaction": satisfaction,
                "_anomaly": None,
            }
        )
        unlinked = rng.random(len(frame)) < self.rates.unlinked_contacts
        by_phone = unlinked & (rng.random(len(frame)) < 0.35)
        by_email = unlinked & ~by_phone
        frame.loc[by_email, "email"] = self.emails[who[by_email]]
        frame.loc[by_phone, "phone"] = [
            render_phone(*self.phone_digits[i], int(s))
            for i, s in zip(who[by_phone], rng.integers(0, 6, by_phone.sum()), strict=True)
        ]
        frame.loc[unlinked, "customer_id"] = None
        self._orphans(frame)
        self._missing(frame, ("topic",))
        self._future(frame, "created_at")
        mask = (rng.random(len(frame)) < self.rates.invalid_dates) & frame["resolved_at"].notna().to_numpy()
        junk = np.array(lx.INVALID_DATE_TEXT, dtype=object)[
            rng.integers(0, len(lx.INVALID_DATE_TEXT), mask.sum())
        ]
        frame.loc[mask, "resolved_at"] = junk
        _flag(frame, mask, "invalid_date", "resolved_at")
        frame = frame.sort_values("created_at", kind="stable", ignore_index=True)
        start = self.counters["tickets"]
        self.counters["tickets"] += len(frame)
        frame["ticket_id"] = [f"T{start + i:08d}" for i in range(len(frame))]
        return _timestamps(frame, ("created_at",))

    def email_events(self) -> pd.DataFrame:
        rng = self.rng
        parts = self.raw["email"]
        who = np.concatenate([x[0] for x in parts])
        sent = np.concatenate([x[1] for x in parts])
        opened = np.concatenate([x[2] for x in parts])
        clicked = np.concatenate([x[3] for x in parts])
        unsub = np.concatenate([x[4] for x in parts])
        period = np.concatenate([np.full(len(x[0]), x[5]) for x in parts])
        campaign = np.array(
            [f"CMP-{p:03d}-{k}" for p, k in zip(period, rng.integers(1, 4, len(who)), strict=True)]
        )
        open_ts = sent + rng.uniform(600, 48 * 3600, len(who)).astype(np.int64)
        click_ts = open_ts + rng.uniform(10, 3600, len(who)).astype(np.int64)
        # per send, for campaign.py (opens of kept customers)
        self.email_draws = (campaign, open_ts, click_ts)
        unsub_ts = sent + rng.uniform(3600, 72 * 3600, len(who)).astype(np.int64)
        rows = [
            (who, sent, "sent", campaign),
            (who[opened], open_ts[opened], "open", campaign[opened]),
            (who[clicked], click_ts[clicked], "click", campaign[clicked]),
            (who[unsub], unsub_ts[unsub], "unsubscribe", campaign[unsub]),
        ]
        w = np.concatenate([r[0] for r in rows])
        ts = np.concatenate([r[1] for r in rows])
        kind = np.concatenate([np.full(len(r[0]), r[2], dtype=object) for r in rows])
        camp = np.concatenate([r[3] for r in rows]).astype(object)
        keep = ts <= self.as_of_end
        w, ts, kind, camp = w[keep], ts[keep], kind[keep], camp[keep]
        frame = pd.DataFrame(
            {
                "customer_id": self._event_ids(w, ts),
                "email": None,
                "ts": ts,
                "event_type": kind,
                "campaign_id": camp,
                "_anomaly": None,
            }
        )
        unlinked = rng.random(len(frame)) < self.rates.unlinked_contacts
        frame.loc[unlinked, "email"] = self.emails[w[unlinked]]
        frame.loc[unlinked, "customer_id"] = None
        self._orphans(frame)
        self._missing(frame, ("campaign_id",))
        mask = rng.random(len(frame)) < self.rates.missing_values
        frame.loc[mask, "event_type"] = frame.loc[mask, "event_type"].str.capitalize()
        _flag(frame, mask, "label_variant", "event_type")
        self._future(frame, "ts")
        frame = frame.sort_values("ts", kind="stable", ignore_index=True)
        return _timestamps(frame, ("ts",))

    def contacts(self) -> None:
        """Names, emails and phones, needed by the CRM and by unlinked events."""
        rng, n = self.rng, self.n
        first, last, emails, phones = [], [], [], []
        countries = np.array(lx.COUNTRIES)[self.country]
        picks = rng.random((n, 4))
        for i in range(n):
            c = countries[i]
            f = lx.FIRST_NAMES[c][int(picks[i, 0] * len(lx.FIRST_NAMES[c]))]
            la = lx.LAST_NAMES[c][int(picks[i, 1] * len(lx.LAST_NAMES[c]))]
            first.append(f)
            last.append(la)
            domain = lx.EMAIL_DOMAINS[int(picks[i, 2] * len(lx.EMAIL_DOMAINS))]
            emails.append(f"{_ascii(f)}.{_ascii(la)}.{_base36(self.start + i)}@{domain}")
            cc, length, prefix = lx.PHONE_PLANS[c]
            digits = prefix + str(int(picks[i, 3] * 10 ** (length - len(prefix)))).zfill(length - len(prefix))
            phones.append((cc, _valid_national(cc, digits, prefix, self.phone_rng)))
        self._households(countries, first, last, emails, phones)
        self.names = np.array([f"{f} {la}" for f, la in zip(first, last, strict=True)], dtype=object)
        self.emails = np.array(emails, dtype=object)
        self.phone_digits = phones

    def _identity_noise(self, dups: pd.DataFrame) -> None:
        """A share of duplicate records get what real CRMs hold and no exact rule undoes: a typo in the
        name, a typo in the email (or no email), the company without its legal form or with a typo."""
        rng = self.noise_rng
        noisy = np.flatnonzero(rng.random(len(dups)) < self.rates.identity_typos)
        what = rng.integers(0, 4, len(noisy))
        columns = {c: dups.columns.get_loc(c) for c in ("name", "email", "company")}
        for row, kind in zip(noisy, what, strict=True):
            name = dups.iat[row, columns["name"]]
            if kind in (0, 3) and isinstance(name, str):
                dups.iat[row, columns["name"]] = _typo(name, rng)
            email = dups.iat[row, columns["email"]]
            if kind in (1, 3) and isinstance(email, str):
                local, _, domain = email.strip().partition("@")
                if rng.random() < 0.3:
                    dups.iat[row, columns["email"]] = None
                elif domain.lower() in _DOMAIN_TYPOS and rng.random() < 0.5:
                    dups.iat[row, columns["email"]] = f"{local}@{_DOMAIN_TYPOS[domain.lower()]}"
                else:
                    dups.iat[row, columns["email"]] = f"{_typo(local, rng)}@{domain}"
            company = dups.iat[row, columns["company"]]
            if kind == 2 and isinstance(company, str):
                words = company.split()
                dups.iat[row, columns["company"]] = (
                    " ".join(words[:2]) if rng.random() < 0.5 else _typo(company, rng)
                )

    def _households(self, countries, first: list, last: list, emails: list, phones: list) -> None:
        """Pairs of customers in one household: the second takes the first's surname and phone, keeps
        their own first name and email. Different customers that a careless matcher merges."""
        rng, n = self.noise_rng, self.n
        members = np.flatnonzero(rng.random(n) < self.rates.shared_households)
        partners = rng.integers(0, n, len(members))
        pairs = []
        for j, i in zip(members, partners, strict=True):
            if i == j or countries[i] != countries[j] or first[i] == first[j]:
                continue
            last[j], phones[j] = last[i], phones[i]
            domain = emails[j].partition("@")[2]
            emails[j] = f"{_ascii(first[j])}.{_ascii(last[j])}.{_base36(self.start + j)}@{domain}"
            pairs.append((i, j))
        self.households = pairs

    def household_table(self) -> pd.DataFrame:
        """truth/households.csv: pairs of different customers sharing a phone and surname."""
        first, second = (np.array([p[k] for p in self.households], dtype=int) for k in (0, 1))
        return pd.DataFrame(
            {"customer_id": self.ids[first], "household_member_id": self.ids[second]}, dtype="string"
        )

    def crm(self) -> pd.DataFrame:
        rng, n = self.rng, self.n
        seg = self.seg
        countries = np.array(lx.COUNTRIES)[self.country]
        word_a = rng.integers(0, len(lx.COMPANY_WORDS_A), n)
        word_b = rng.integers(0, len(lx.COMPANY_WORDS_B), n)
        form_pick = rng.random(n)
        variant = rng.random(n) < self.rates.legal_form_variants
        variant_pick = rng.random(n)
        companies, company_stems, forms = [], [], []
        for i in range(n):
            c = countries[i]
            kinds = lx.LEGAL_FORMS[c]
            spellings = kinds[int(form_pick[i] * len(kinds))]
            spelling = (
                spellings[1 + int(variant_pick[i] * (len(spellings) - 1))] if variant[i] else spellings[0]
            )
            stem = f"{lx.COMPANY_WORDS_A[word_a[i]]} {lx.COMPANY_WORDS_B[word_b[i]]}"
            companies.append(f"{stem} {spelling}")
            company_stems.append(stem)
            forms.append(spellings)
        phone_style = np.where(rng.random(n) < 0.6, 0, rng.integers(1, 6, n))
        plan_p = np.array([s.plan_mix for s in SEGMENTS])
        contract_p = np.array([s.contract_mix for s in SEGMENTS])
        big = np.array([s.name == "big_ticket_b2b" for s in SEGMENTS])[seg]
        size_idx = np.where(big, rng.integers(2, 5, n), rng.integers(0, 3, n))
        updated = self.signup + rng.random(n) * (self.as_of_end - self.signup)
        lag = 30 * DAY_S  # the CRM learns about churn a month late
        crm_churned = self.churn_ts <= self.as_of_end - lag

        def consent(values: np.ndarray) -> np.ndarray:
            words = np.where(values, 0, 1)
            pick = rng.integers(0, len(lx.CONSENT_TRUE), n)
            return np.array(
                [(lx.CONSENT_TRUE, lx.CONSENT_FALSE)[w][k] for w, k in zip(words, pick, strict=True)],
                dtype=object,
            )

        frame = pd.DataFrame(
            {
                "customer_id": self.ids,
                "company": np.array(companies, dtype=object),
                "name": self.names,
                "email": self.emails,
                "phone": np.array(
                    [render_phone(*self.phone_digits[i], int(phone_style[i])) for i in range(n)], dtype=object
                ),
                "country": countries.astype(object),
                "industry": np.array(lx.INDUSTRIES, dtype=object)[rng.integers(0, len(lx.INDUSTRIES), n)],
                "company_size": np.array(lx.COMPANY_SIZES, dtype=object)[size_idx],
                "signup_date": pd.to_datetime(self.signup, unit="s")
                .strftime("%Y-%m-%d")
                .to_numpy(dtype=object),
                "updated_at": updated.astype(np.int64),
                "plan": np.array(lx.PLANS, dtype=object)[_choice_index(rng, plan_p, seg)],
                "contract": np.array(lx.CONTRACTS, dtype=object)[_choice_index(rng, contract_p, seg)],
                "payment_method": np.array(lx.PAYMENT_METHODS, dtype=object)[rng.integers(0, 4, n)],
                "monthly_charges": np.round(
                    np.array([s.monthly_charges for s in SEGMENTS])[seg] * rng.lognormal(0, 0.2, n), 2
                ),
                "consent_marketing": consent(self.consent_marketing),
                "consent_profiling": consent(self.consent_profiling),
                "churned": np.where(crm_churned, "1", "0").astype(object),
                "churn_date": np.where(
                    crm_churned,
                    pd.to_datetime(np.where(crm_churned, self.churn_ts, 0), unit="s").strftime("%Y-%m-%d"),
                    None,
                ),
                "_anomaly": None,
            }
        )
        frame.loc[rng.random(n) < 0.05, "churned"] = None  # status unknown

        # duplicate records of the same person: new id, email case/whitespace, phone format, legal form
        d = self.dup_of
        dups = frame.iloc[d].copy()
        dups["customer_id"] = self.dup_ids
        style = rng.integers(0, 4, len(d))
        dups["email"] = [_email_variant(e, int(s)) for e, s in zip(dups["email"], style, strict=True)]
        new_style = (phone_style[d] + rng.integers(1, 6, len(d))) % 6
        dups["phone"] = [
            render_phone(*self.phone_digits[i], int(s)) for i, s in zip(d, new_style, strict=True)
        ]
        dups.loc[rng.random(len(d)) < 0.15, "phone"] = None
        company_dup = []
        for k, i in enumerate(d):
            spellings = forms[i]
            pick = spellings[int(rng.integers(0, len(spellings)))]
            stem = company_stems[i].upper() if k % 3 == 0 else company_stems[i]
            company_dup.append(f"{stem} {pick}")
        dups["company"] = company_dup
        dups.loc[rng.random(len(d)) < 0.4, "name"] = dups["name"].str.upper()
        self._identity_noise(dups)
        dups["signup_date"] = (
            pd.to_datetime(self.dup_signup, unit="s").strftime("%Y-%m-%d").to_numpy(dtype=object)
        )
        dups["updated_at"] = self.dup_signup + (
            rng.random(len(d)) * (self.as_of_end - self.dup_signup)
        ).astype(np.int64)
        self.duplicates = pd.DataFrame(
            {
                "duplicate_id": self.dup_ids,
                "original_id": self.ids[d],
                "email_variant": dups["email"].to_numpy(),
                "phone_variant": dups["phone"].to_numpy(),
                "company_variant": dups["company"].to_numpy(),
            }
        )
        frame = pd.concat([frame, dups], ignore_index=True)
        total = len(frame)

        self._missing(frame, ("phone", "company", "country", "industry", "signup_date"))
        mask = (rng.random(total) < self.rates.invalid_dates) & frame["signup_date"].notna().to_numpy()
        frame.loc[mask, "signup_date"] = np.array(lx.INVALID_DATE_TEXT, dtype=object)[
            rng.integers(0, len(lx.INVALID_DATE_TEXT), mask.sum())
        ]
        _flag(frame, mask, "invalid_date", "signup_date")
        mask = (rng.random(total) < self.rates.future_dates) & frame["signup_date"].notna().to_numpy()
        future = pd.to_datetime(self.as_of_end + rng.uniform(30, 400, mask.sum()) * DAY_S, unit="s")
        frame.loc[mask, "signup_date"] = future.strftime("%Y-%m-%d").to_numpy(dtype=object)
        _flag(frame, mask, "future_date", "signup_date")
        # stale: a record nobody touched for years (only possible for old accounts)
        signup_all = np.concatenate([self.signup, self.dup_signup])
        old = signup_all < self.as_of_end - 3 * 365 * DAY_S
        mask = old & (rng.random(total) < self.rates.stale_records / max(old.mean(), 1e-9))
        frame.loc[mask, "updated_at"] = (
            signup_all[mask] + rng.uniform(0, 60, mask.sum()).astype(np.int64) * DAY_S
        )
        _flag(frame, mask, "stale_record", "updated_at")

        frame = frame.iloc[rng.permutation(total)].reset_index(drop=True)
        return _timestamps(frame, ("updated_at",))

    def truth(self) -> pd.DataFrame:
        # the written world's churn: with a campaign, kept customers never churned
        churn_ts = self.churn_ts if self.world_churn_ts is None else self.world_churn_ts
        churn = pd.to_datetime(np.where(np.isinf(churn_ts), 0, churn_ts), unit="s").strftime("%Y-%m-%d")
        return pd.DataFrame(
            {
                "customer_id": self.ids,
                "segment": np.array([s.name for s in SEGMENTS], dtype=object)[self.seg],
                "lifecycle": np.array(LIFECYCLES, dtype=object)[self.life],
                "signup_date": pd.to_datetime(self.signup, unit="s").strftime("%Y-%m-%d"),
                "churn_date": np.where(np.isinf(churn_ts), None, churn),
                "churned_by_as_of": churn_ts <= self.as_of_end,
                "consent_profiling": self.consent_profiling,
            }
        )


def _flag(frame: pd.DataFrame, mask: np.ndarray, kind: str, column: str) -> None:
    if not mask.any():
        return
    label = f"{kind}:{column}"
    current = frame.loc[mask, "_anomaly"]
    frame.loc[mask, "_anomaly"] = np.where(current.isna(), label, current.astype(str) + "|" + label)


def _timestamps(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    for column in columns:
        frame[column] = pd.to_datetime(frame[column].astype("int64"), unit="s")
    return frame


# --- writing ------------------------------------------------------------------------------------------


class _Sink:
    """Appends chunks of one table to a CSV or Parquet file with a fixed schema; counts rows."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = path, fmt
        self.writer = None
        self.schema: pa.Schema | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> int:
        """Write and return the 1-based source row of the frame's first row."""
        if self.schema is None:
            self.schema = pa.Schema.from_pandas(frame, preserve_index=False)
            self.schema = pa.schema(
                [
                    pa.field(
                        f.name,
                        pa.timestamp("s")
                        if pa.types.is_timestamp(f.type)
                        else (pa.string() if pa.types.is_null(f.type) else f.type),
                    )
                    for f in self.schema
                ]
            )
            if self.fmt == "csv":
                self.writer = pacsv.CSVWriter(self.path, self.schema)
            else:
                self.writer = pq.ParquetWriter(self.path, self.schema)
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self.writer.write_table(table)
        first = self.rows + 1
        self.rows += len(frame)
        return first

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


_STRING_COLUMNS = {
    "crm_customers": ("customer_id", "company", "name", "email", "phone", "country", "industry", "company_size",
                      "signup_date", "plan", "contract", "payment_method", "consent_marketing",
                      "consent_profiling", "churned", "churn_date"),
    "orders": ("order_id", "customer_id", "channel", "product_category"),
    "web_events": ("customer_id", "email", "anonymous_id", "event_type", "page", "session_id"),
    "support_tickets": ("ticket_id", "customer_id", "email", "phone", "topic", "channel", "resolved_at"),
    "email_events": ("customer_id", "email", "event_type", "campaign_id"),
}  # fmt: skip


def generate(
    cfg: GeneratorConfig,
    out_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    campaign: CampaignPlan | None = None,
) -> GenerationSummary:
    """Write the five extracts to ``out_dir`` and the planted truth to ``out_dir/truth``.

    ``progress(done, total)`` is called PROGRESS_PARTS times per chunk of CHUNK_SIZE customers, with
    ``done`` rising to ``total``; inside a chunk ``done`` is an estimate (the share of its parts done).

    ``campaign`` (campaign.py) re-generates the same company with a retention campaign run at its date: the
    rows of the world without it are unchanged (bar the CRM's churned/churn_date of kept customers), kept and
    won-back customers' later activity is appended, and the contacts go to an ``interventions`` extract.
    """
    if cfg.customers < 1:
        raise ValueError("customers must be at least 1")
    run = None
    if campaign is not None:
        run = campaign.start(cfg)  # validates the plan before anything is written
    out = Path(out_dir)
    truth_dir = out / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    ext = "csv" if cfg.format == "csv" else "parquet"
    files = {name: out / f"{name}.{ext}" for name in SOURCES}
    sinks = {name: _Sink(path, cfg.format) for name, path in files.items()}
    truth_sinks = {
        name: _Sink(truth_dir / f"{name}.csv", "csv")
        for name in ("customers", "duplicates", "households", "web_identities", "anomalies")
    }
    counters = {"duplicates": 0, "orphans": 0, "orders": 0, "tickets": 0, "sessions": 0}
    anomaly_counts: dict[str, int] = {}
    try:
        for chunk_no, start in enumerate(range(0, cfg.customers, CHUNK_SIZE)):
            chunk = _Chunk(cfg, chunk_no, start, min(CHUNK_SIZE, cfg.customers - start), counters)

            def tick(part: int, start: int = start, chunk: _Chunk = chunk) -> None:
                if progress is not None:
                    progress(start + chunk.n * part // PROGRESS_PARTS, cfg.customers)

            chunk.customers()
            chunk.contacts()
            chunk.simulate()
            chunk.plan_duplicates()
            tick(1)
            tables = {}
            for name, make in (  # the order of these calls is part of the seed's output
                ("crm_customers", chunk.crm),
                ("orders", chunk.orders),
                ("web_events", chunk.web_events),
                ("support_tickets", chunk.support_tickets),
                ("email_events", chunk.email_events),
            ):
                tables[name] = make()
                tick(1 + len(tables))
            # the campaign reads the built tables (the label without it) and fixes the CRM before it is written
            if run is not None:
                run.apply(chunk, chunk_no, tables)
            for written, (name, frame) in enumerate(tables.items(), start=1):
                anomalies = frame["_anomaly"]
                frame = frame.drop(columns="_anomaly")
                for column in _STRING_COLUMNS[name]:
                    frame[column] = frame[column].astype(object)
                write_table(name, frame, anomalies, sinks[name], truth_sinks["anomalies"], anomaly_counts)
                tick(1 + len(tables) + written)
            truth_sinks["customers"].write(chunk.truth())
            if len(chunk.duplicates):
                truth_sinks["duplicates"].write(chunk.duplicates)
            if chunk.households:
                truth_sinks["households"].write(chunk.household_table())
            truth_sinks["web_identities"].write(chunk.identities)
            tick(PROGRESS_PARTS)
        if run is not None:  # kept customers' rows come last, so no row or id of the world without them moves
            for name, frame in run.added_rows().items():
                for column in _STRING_COLUMNS[name]:
                    frame[column] = frame[column].astype(object)
                write_table(name, frame, pd.Series(None, index=frame.index, dtype=object), sinks[name], None,
                            anomaly_counts)  # fmt: skip
    finally:
        for sink in (*sinks.values(), *truth_sinks.values()):
            sink.close()
    for name, sink in truth_sinks.items():
        if sink.rows == 0:  # a tiny company may have no duplicates: still leave a readable file
            (truth_dir / f"{name}.csv").write_text(_EMPTY_TRUTH_HEADERS[name] + "\n", encoding="utf-8")
    rows = {name: sink.rows for name, sink in sinks.items()}
    campaign_summary = None
    if run is not None:
        files["interventions"], rows["interventions"], campaign_summary = run.write(out, cfg.format)
    manifest = {
        "generator": "seg_pipeline.synthetic",
        "customers": cfg.customers,
        "seed": cfg.seed,
        "as_of": cfg.as_of.isoformat(),
        "history_days": cfg.history_days,
        "format": cfg.format,
        "rates": asdict(cfg.rates),
        "segments": {s.name: s.weight for s in SEGMENTS},
        "rows": rows,
        "duplicates": counters["duplicates"],
        "anomalies": dict(sorted(anomaly_counts.items())),
    }
    if campaign_summary is not None:
        manifest["campaign"] = campaign_summary
    (truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    date_as_exported(files.values(), cfg.as_of)
    return GenerationSummary(out, rows, manifest["anomalies"], counters["duplicates"], files)


def date_as_exported(paths: Iterable[Path], as_of: dt.date) -> None:
    """Give extracts of a past as_of the modification time of that day's end (UTC).

    A company generated for an earlier date stands for extracts exported on that date: the pipeline takes
    a file's modification date as its export date (sources/window.py), and only rows dated after it are
    future-date errors, so the planted future dates must stay after it. A company for today keeps the
    time it was written.
    """
    stamp = dt.datetime.combine(as_of, dt.time(23, 59, 59), tzinfo=dt.UTC).timestamp()
    if stamp < time.time():
        for path in paths:
            os.utime(path, (stamp, stamp))


_EMPTY_TRUTH_HEADERS = {
    "customers": "customer_id,segment,lifecycle,signup_date,churn_date,churned_by_as_of,consent_profiling",
    "duplicates": "duplicate_id,original_id,email_variant,phone_variant,company_variant",
    "households": "customer_id,household_member_id",
    "web_identities": "anonymous_id,customer_id,identified_by_email,identify_ts",
    "anomalies": "source,source_row,key,kind,column",
}


def write_table(name: str, frame: pd.DataFrame, anomalies: pd.Series, sink: _Sink, anomaly_sink: _Sink | None,
                counts: dict[str, int]) -> None:  # fmt: skip
    """Append one chunk's table to its extract, and the rows it flagged to truth/anomalies.csv and to the
    per-kind ``counts`` (``anomaly_sink`` may be None only when nothing is flagged)."""
    first_row = sink.write(frame)
    flagged = np.flatnonzero(anomalies.notna().to_numpy())
    if len(flagged):
        records = _anomaly_rows(name, frame, anomalies, flagged, first_row)
        for kind, count in records["kind"].value_counts().items():
            counts[f"{name}:{kind}"] = counts.get(f"{name}:{kind}", 0) + int(count)
        anomaly_sink.write(records)


def _anomaly_rows(
    name: str, frame: pd.DataFrame, anomalies: pd.Series, flagged: np.ndarray, first_row: int
) -> pd.DataFrame:
    key_column = {"crm_customers": "customer_id", "orders": "order_id", "support_tickets": "ticket_id"}.get(
        name
    )
    labels = anomalies.iloc[flagged].str.split("|")
    exploded = pd.DataFrame({"pos": flagged, "label": labels.to_numpy()}).explode("label")
    kind_col = exploded["label"].str.partition(":")
    keys = frame[key_column].iloc[exploded["pos"]].to_numpy() if key_column else None
    return pd.DataFrame(
        {
            "source": name,
            "source_row": (exploded["pos"].to_numpy() + first_row).astype(np.int64),
            "key": keys if keys is not None else None,
            "kind": kind_col[0].to_numpy(),
            "column": kind_col[2].to_numpy(),
        }
    ).astype({"key": object})

"""A retention campaign with a known effect, planted in the synthetic company (issue 28, point 4).

The pipeline run as of date D puts the customers of the three action tiers in a treatment or a control arm.
``generate(cfg, out, campaign=CampaignPlan(D, assignments))`` re-generates the SAME company with that list
worked: each treatment-arm customer is reached with the tier's contact rate on a day in (D, D + 14]. A
reached customer who would be churned by the activity label of (D, D + horizon] without the campaign is
active in that window with the tier's effect:
- kept, if their simulated churn comes after the contact (or never): their churn is postponed past the end
  of the simulation and from their original churn moment on they order, browse and open emails like an
  engaged customer of their segment;
- won back, if they had churned before the contact (lapsed): from the contact on they get the same activity.
Either way their first order or web session falls within (contact, contact + 30 days] (and inside the
window), so the label really changes. A customer active in the window anyway is untouched (their label
cannot improve), and so is a control customer: they are never contacted. The planted uplift of a tier is
therefore about effect x contact rate x (share of its treatment arm churned without the campaign).

Everything the world without the campaign holds stays as it was: the campaign draws from its own random
stream (SeedSequence([seed, chunk, 3])), kept customers' rows are appended after all others with ids of
their own (orders OK..., sessions SK...), and only the CRM's churned/churn_date of kept customers change
(the CRM is a snapshot as of as_of: a kept or won-back customer is not churned in it). The extracts gain
``interventions`` (one row per contact dated up to as_of: customer_id as assigned, date, campaign, channel).

The truth: ``truth/campaign.csv`` has one row per action-tier assignment with the activity label of
(D, D + horizon] (1 = no order, web event, ticket, email open or click in the window, the pipeline's
activity churn label) without and with the campaign, from the simulated events (those after as_of too,
before any injected messiness), and whether the customer was kept (kept or won back) and won back;
``truth/manifest.json`` "campaign" the per-tier counts and the planted uplift: mean(churned_without -
churned_with) over the treatment arm, what an intention-to-treat estimate of the run should recover.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seg_pipeline.churn.actions import ACTION_TIERS, ARMS, TREATMENT
from seg_pipeline.synthetic import lexicon as lx
from seg_pipeline.synthetic.generator import (
    DAY_S,
    DUPLICATE_BASE,
    FUTURE_DAYS,
    PERIOD_S,
    GeneratorConfig,
    _choice_index,
    _Chunk,
    _Sink,
    customer_id,
)
from seg_pipeline.synthetic.segments import SEGMENTS

DEFAULT_EFFECTS = {"personal_outreach": 0.5, "semi_automated": 0.3, "automated": 0.15}
DEFAULT_CONTACT_RATES = {"personal_outreach": 0.9, "semi_automated": 0.95, "automated": 1.0}
DEFAULT_CHANNELS = {"personal_outreach": "phone", "semi_automated": "email+call", "automated": "email"}
DEFAULT_CAMPAIGNS = {
    "personal_outreach": "winback-personal",
    "semi_automated": "winback-assisted",
    "automated": "winback-automated",
}
CONTACT_WINDOW_DAYS = 14  # contacts fall on a day in (D, D + 14]
ASSIGNMENT_COLUMNS = ("customer_id", "tier", "arm")
CAMPAIGN_TRUTH_COLUMNS = ["customer_id", "original_id", "tier", "arm", "contacted", "kept", "won_back",
                          "churned_without_campaign", "churned_with_campaign"]  # fmt: skip
RETURN_DAYS = 30  # a kept or won-back customer's first order or web session comes within 30 days of contact
KEPT_ENGAGEMENT = 1.0  # a kept customer's stationary engagement: the level of a settled, mature customer
CANCEL_PAGE_SHARE = 0.02  # the baseline share of cancel-page views (a kept customer is not frustrated)


@dataclass(frozen=True, eq=False)  # eq=False: the assignments frame has no truth value to compare
class CampaignPlan:
    """The retention list of the run as of ``date`` and how well working it keeps customers.

    ``assignments``: customer_id (a CRM id as the pipeline publishes it; a duplicate record's id stands for
    its original customer), tier, arm. Rows of other tiers (no_action, no_consent) are ignored.
    ``effects``: tier -> P(a contacted customer who would be churned in the label window without the
    campaign is active in it: kept, or won back if lapsed); ``contact_rates``: tier -> share of the treatment
    arm reached. ``horizon_days``: the churn label's horizon, activity in
    (date, date + horizon].
    """

    date: dt.date
    assignments: pd.DataFrame
    horizon_days: int = 90
    effects: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EFFECTS))
    contact_rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_CONTACT_RATES))
    channels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    campaigns: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CAMPAIGNS))

    def start(self, cfg: GeneratorConfig) -> CampaignRun:
        """The campaign as ``generate`` runs it on the company of ``cfg`` (the generator calls this, so it
        never imports this module, which builds on it)."""
        return CampaignRun(self, cfg)

    def __post_init__(self) -> None:
        if not isinstance(self.date, dt.date) or isinstance(self.date, dt.datetime):
            raise ValueError(f"campaign date must be a datetime.date, got {self.date!r}")
        if not isinstance(self.assignments, pd.DataFrame):
            raise ValueError("campaign assignments must be a pandas DataFrame")
        missing = [c for c in ASSIGNMENT_COLUMNS if c not in self.assignments.columns]
        if missing:
            raise ValueError(
                f"campaign assignments lack column(s) {', '.join(missing)}; expected {', '.join(ASSIGNMENT_COLUMNS)}"
            )
        days = self.horizon_days
        if isinstance(days, bool) or not isinstance(days, numbers.Integral) or days < 1:
            raise ValueError(
                f"campaign horizon_days must be a positive whole number of days, got {self.horizon_days!r}"
            )
        for name, mapping in (("effects", self.effects), ("contact_rates", self.contact_rates)):
            absent = [t for t in ACTION_TIERS if t not in mapping]
            if absent:
                raise ValueError(f"campaign {name} lacks tier(s) {', '.join(absent)}")
            for tier in ACTION_TIERS:
                value = mapping[tier]
                if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                    raise ValueError(
                        f"campaign {name}[{tier!r}] must be a probability in [0, 1], got {value!r}"
                    )
        for name, mapping in (("channels", self.channels), ("campaigns", self.campaigns)):
            absent = [t for t in ACTION_TIERS if not mapping.get(t)]
            if absent:
                raise ValueError(f"campaign {name} lacks a name for tier(s) {', '.join(absent)}")
        acting = self.assignments[self.assignments["tier"].isin(ACTION_TIERS)]
        bad_arm = acting.loc[~acting["arm"].isin(ARMS), "arm"]
        if len(bad_arm):
            raise ValueError(
                f"campaign assignments hold an unknown arm {bad_arm.iloc[0]!r} in an action tier; "
                f"arms are {', '.join(ARMS)}"
            )
        ids = acting["customer_id"]
        if ids.isna().any():
            raise ValueError("campaign assignments hold an empty customer_id in an action tier")
        repeated = ids[ids.astype(str).duplicated()]
        if len(repeated):
            raise ValueError(f"campaign assignments list customer_id {repeated.iloc[0]!r} more than once")

    def check(self, cfg: GeneratorConfig) -> None:
        """The plan fits the company ``cfg`` generates: D inside its history, the label window simulated."""
        first = cfg.as_of - dt.timedelta(days=cfg.history_days - 1)
        if not first <= self.date <= cfg.as_of:
            raise ValueError(
                f"campaign date {self.date} is outside the generated history {first} to {cfg.as_of} "
                "(history_days before as_of)"
            )
        last = cfg.as_of + dt.timedelta(days=FUTURE_DAYS)
        if self.date + dt.timedelta(days=self.horizon_days) > last:
            raise ValueError(
                f"campaign label window {self.date} + {self.horizon_days} days ends after {last}, the end of "
                f"the simulation (as_of + {FUTURE_DAYS} days)"
            )


# customer_id() multiplies the index by an odd number modulo 2^32: its inverse maps an id back to its index
_ID_MULT, _ID_MOD = 2654435761, 1 << 32
_ID_INVERSE = pow(_ID_MULT, -1, _ID_MOD)
_ID_PATTERN = re.compile(r"C\d{10}")


def customer_index(cid: str) -> int | None:
    """The generator index behind a customer id (customers, then duplicate records), None if not an id."""
    if not isinstance(cid, str) or not _ID_PATTERN.fullmatch(cid):
        return None
    value = int(cid[1:])
    if value >= _ID_MOD:
        return None
    index = ((value - 97) * _ID_INVERSE) % _ID_MOD
    return index if customer_id(index) == cid else None


def _end_of_day(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC).timestamp())


class CampaignRun:
    """Applies a CampaignPlan while generate() walks the chunks; see the module docstring."""

    def __init__(self, plan: CampaignPlan, cfg: GeneratorConfig):
        plan.check(cfg)
        self.plan, self.cfg = plan, cfg
        acting = plan.assignments[plan.assignments["tier"].isin(ACTION_TIERS)]
        self.ids = acting["customer_id"].astype(str).to_numpy(dtype=object)
        self.tier = acting["tier"].astype(str).to_numpy(dtype=object)
        self.arm = acting["arm"].astype(str).to_numpy(dtype=object)
        m = len(self.ids)
        self.original = np.full(m, -1, dtype=np.int64)  # global customer index, once known
        self.dup_no = np.full(m, -1, dtype=np.int64)  # number of the duplicate record an id names
        for row, cid in enumerate(self.ids):
            index = customer_index(cid)
            if index is not None and index < cfg.customers:
                self.original[row] = index
            elif index is not None and DUPLICATE_BASE <= index < DUPLICATE_BASE + cfg.customers:
                self.dup_no[row] = index - DUPLICATE_BASE
            else:
                raise ValueError(f"campaign assignments name {cid!r}, not a customer id of this company")
        self.effect = np.array([plan.effects[t] for t in self.tier], dtype=float)
        self.reach = np.array([plan.contact_rates[t] for t in self.tier], dtype=float)
        self.contacted = np.zeros(m, dtype=bool)
        self.contact_day = np.zeros(m, dtype=np.int64)  # days after D
        self.kept = np.zeros(m, dtype=bool)  # kept or won back
        self.won_back = np.zeros(m, dtype=bool)
        self.churned_without = np.zeros(m, dtype=np.int64)
        self.churned_with = np.zeros(m, dtype=np.int64)
        self.d_end = _end_of_day(plan.date)
        self.window = (self.d_end, self.d_end + plan.horizon_days * DAY_S)  # (after, up to]
        self.as_of_end = _end_of_day(cfg.as_of)
        self.added: dict[str, list[pd.DataFrame]] = {"orders": [], "web_events": [], "email_events": []}
        self.next_id = {"orders": 0, "sessions": 0}

    # per chunk ---------------------------------------------------------------------------------------
    def apply(self, chunk: _Chunk, chunk_no: int, tables: dict[str, pd.DataFrame]) -> None:
        """The chunk's contacts, who is kept or won back, their added activity and the labels without and
        with the campaign. Runs after the chunk's tables are built (the label without the campaign needs
        their page views and email opens) and before they are written (the CRM shows the kept)."""
        n_dup = len(chunk.dup_ids)
        dup_base = chunk.counters["duplicates"] - n_dup
        named = (self.dup_no >= dup_base) & (self.dup_no < dup_base + n_dup)
        self.original[named] = chunk.start + chunk.dup_of[self.dup_no[named] - dup_base]
        rows = np.flatnonzero((self.original >= chunk.start) & (self.original < chunk.start + chunk.n))
        if not len(rows):  # nobody of this chunk is listed
            return
        local = self.original[rows] - chunk.start
        by = np.lexsort((rows, local))  # by customer, so draws do not depend on the order of the list
        rows, local = rows[by], local[by]
        m = len(rows)
        self.rng = rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, chunk_no, 3]))
        reach_u, keep_u = rng.random(m), rng.random(m)
        day = rng.integers(1, CONTACT_WINDOW_DAYS + 1, m)
        contact_ts = self.d_end + 1 + (day - 1) * DAY_S + rng.integers(0, DAY_S, m)
        contacted = (self.arm[rows] == TREATMENT) & (reach_u < self.reach[rows])
        self.contacted[rows], self.contact_day[rows] = contacted, np.where(contacted, day, 0)

        # A customer listed twice (also under a duplicate record's id) is decided by their first contact.
        first_ts = np.where(contacted, contact_ts, np.iinfo(np.int64).max)
        lead = np.lexsort((first_ts, local))
        lead = lead[np.r_[True, local[lead][1:] != local[lead][:-1]]]
        who, at = local[lead], contact_ts[lead]
        active_without = self._active(chunk)
        # only a label that can improve: churned in the window without the campaign, a customer already
        # signed up at the contact, and a contact inside the window (it is, unless the horizon is < 14 days)
        keep = (
            contacted[lead]
            & ~active_without[who]
            & (chunk.signup[who] < at)
            & (at < self.window[1])
            & (keep_u[lead] < self.effect[rows[lead]])
        )
        kept, since = who[keep], at[keep]
        order = np.argsort(kept)
        self.kept_local, self.kept_contact = kept[order], since[order]
        lapsed = np.zeros(chunk.n, dtype=bool)
        lapsed[self.kept_local] = chunk.churn_ts[self.kept_local] <= self.kept_contact
        is_kept = np.zeros(chunk.n, dtype=bool)
        is_kept[self.kept_local] = True
        self.kept[rows], self.won_back[rows] = is_kept[local], lapsed[local]
        # the written world's churn: kept and won-back customers have not churned by the end of the simulation
        world = chunk.churn_ts.copy()
        world[self.kept_local] = np.inf
        chunk.world_churn_ts = world
        tables["crm_customers"] = self._crm_snapshot(chunk, tables["crm_customers"])

        orders, sessions, pages, opens, clicks = self._kept_activity(chunk)
        active_with = active_without.copy()
        for ids, ts in (orders[:2], pages[:2], opens[:2], clicks[:2]):
            active_with[ids[self._in_window(ts)]] = True
        self.churned_without[rows] = ~active_without[local]
        self.churned_with[rows] = ~active_with[local]
        self._added_frames(chunk, orders, sessions, pages, opens, clicks)

    def _crm_snapshot(self, chunk: _Chunk, crm: pd.DataFrame) -> pd.DataFrame:
        """The CRM as of as_of in the world with the campaign: kept customers' records (their duplicate
        records too) are not churned; an unknown status stays unknown. The only change to a written row."""
        kept = self.kept_local
        slot = chunk.dup_slot[kept]
        ids = np.concatenate([chunk.ids[kept], chunk.dup_ids[slot[slot >= 0]]])
        mine = crm["customer_id"].isin(ids).to_numpy()
        crm = crm.copy()
        crm.loc[mine & crm["churned"].notna().to_numpy(), "churned"] = "0"
        crm.loc[mine, "churn_date"] = None
        return crm

    def _in_window(self, ts: np.ndarray) -> np.ndarray:
        return (ts > self.window[0]) & (ts <= self.window[1])

    def _active(self, chunk: _Chunk) -> np.ndarray:
        """Per customer: any simulated activity in the label window (written or after as_of)."""
        raw = chunk.raw
        parts = [(np.concatenate([p[0] for p in raw[k]]), np.concatenate([p[1] for p in raw[k]]))
                 for k in ("orders", "tickets", "sessions")]  # fmt: skip
        (o_who, o_ts), (t_who, t_ts), (s_who, s_ts) = parts
        # page views exist only for sessions up to as_of; later ones count by their start
        later = s_ts > self.as_of_end
        e_who = np.concatenate([p[0] for p in raw["email"]])
        opened = np.concatenate([p[2] for p in raw["email"]])
        clicked = np.concatenate([p[3] for p in raw["email"]])
        _, open_ts, click_ts = chunk.email_draws
        active = np.zeros(chunk.n, dtype=bool)
        for who, ts in ((o_who, o_ts), (t_who, t_ts), (s_who[later], s_ts[later]), chunk.page_views,
                        (e_who[opened], open_ts[opened]), (e_who[clicked], click_ts[clicked])):  # fmt: skip
            active[who[self._in_window(ts)]] = True
        return active

    def _kept_activity(self, chunk: _Chunk) -> tuple:
        """Orders, web sessions and email opens of the kept and won-back customers: a first order or session
        within RETURN_DAYS of the contact (inside the label window), then from their original churn moment
        (kept) or the contact (won back) to the end of the simulation at their segment's rates times their
        own multipliers."""
        rng, kept, contact = self.rng, self.kept_local, self.kept_contact
        seg = chunk.seg
        end = chunk.t0 + math.ceil((self.cfg.history_days + FUTURE_DAYS) / 30) * PERIOD_S
        # a customer who never churns (merely quiet in the window) keeps the activity they already have
        since = np.minimum(np.maximum(chunk.churn_ts[kept], contact), end).astype(np.int64)
        span = end - since
        orders_rate = (
            np.array([s.orders_per_month for s in SEGMENTS])[seg] * chunk.order_mult * KEPT_ENGAGEMENT
        )[kept]
        web_rate = (
            np.array([s.web_sessions_per_month for s in SEGMENTS])[seg] * chunk.web_mult * KEPT_ENGAGEMENT
        )[kept]

        # the return: an order or a web session in (contact, min(contact + RETURN_DAYS, window end)]
        by = np.minimum(contact + RETURN_DAYS * DAY_S, self.window[1])
        first_ts = contact + 1 + (rng.random(len(kept)) * (by - contact)).astype(np.int64)
        first_order = rng.random(len(kept)) < orders_rate / (orders_rate + web_rate)

        def draw(rate: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            k = np.repeat(np.arange(len(kept)), rng.poisson(rate * span / PERIOD_S))
            ts = (since[k] + rng.random(len(k)) * span[k]).astype(np.int64)
            return np.concatenate([kept[first], kept[k]]), np.concatenate([first_ts[first], ts])

        who, ts = draw(orders_rate, first_order)
        value = np.array([s.order_value for s in SEGMENTS])[seg] * chunk.value_mult
        orders = (who, ts, value[who] * rng.lognormal(0, 0.45, len(who)))

        s_who, s_start = draw(web_rate, ~first_order)
        pages = 1 + rng.poisson(0.6, len(s_who))
        session = np.repeat(np.arange(len(s_who)), pages)
        step = np.concatenate([np.arange(k) for k in pages]) if len(pages) else np.zeros(0, dtype=int)
        p_ts = s_start[session] + (step * rng.uniform(20, 300, len(session))).astype(np.int64)
        sessions = (s_who, s_start)

        # The sends after the churn moment were opened at the churned rate (3 %): reopen those from the
        # customer's `since` on at their segment's rate. Sends already respect unsubscribes and consent.
        e_who = np.concatenate([p[0] for p in chunk.raw["email"]])
        sent = np.concatenate([p[1] for p in chunk.raw["email"]])
        opened = np.concatenate([p[2] for p in chunk.raw["email"]])
        since_of = np.full(chunk.n, np.iinfo(np.int64).max)
        since_of[kept] = since
        cand = np.flatnonzero((sent >= since_of[e_who]) & ~opened)
        open_rate = np.array([s.email_open_rate for s in SEGMENTS])[seg[e_who[cand]]] * min(
            KEPT_ENGAGEMENT, 1.3
        )
        dead = 0.03 * open_rate
        send = cand[rng.random(len(cand)) < (open_rate - dead) / (1 - dead)]
        open_ts = sent[send] + rng.uniform(600, 48 * 3600, len(send)).astype(np.int64)
        click_rate = np.array([s.email_click_rate for s in SEGMENTS])[seg[e_who[send]]]
        clicked = rng.random(len(send)) < click_rate
        click_ts = open_ts + rng.uniform(10, 3600, len(send)).astype(np.int64)
        opens = (e_who[send], open_ts, send)
        clicks = (e_who[send[clicked]], click_ts[clicked], send[clicked])
        return orders, sessions, (s_who[session], p_ts, session), opens, clicks

    def _event_ids(self, chunk: _Chunk, who: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """As _Chunk._event_ids, on the campaign's stream: 30 % of events after a duplicate record exists
        carry its id."""
        ids = chunk.ids[who]
        if len(chunk.dup_ids) and len(who):
            slot = chunk.dup_slot[who]
            later = (slot >= 0) & (ts >= chunk.dup_signup[np.maximum(slot, 0)])
            moved = later & (self.rng.random(len(who)) < 0.3)
            ids[moved] = chunk.dup_ids[slot[moved]]
        return ids

    def _added_frames(self, chunk: _Chunk, orders, sessions, pages, opens, clicks) -> None:
        """The kept customers' rows up to as_of, in the extracts' layouts, clean (no injected messiness)."""
        rng = self.rng
        who, ts, amount = orders
        keep = ts <= self.as_of_end
        who, ts, amount = who[keep], ts[keep], amount[keep]
        by = np.argsort(ts, kind="stable")
        who, ts, amount = who[by], ts[by], amount[by]
        seg = chunk.seg[who]
        first = self.next_id["orders"]
        self.next_id["orders"] += len(who)
        self.added["orders"].append(
            pd.DataFrame(
                {
                    "order_id": [f"OK{first + i:08d}" for i in range(len(who))],
                    "customer_id": self._event_ids(chunk, who, ts),
                    "order_date": pd.to_datetime(ts, unit="s"),
                    "amount": np.round(amount, 2),
                    "channel": np.array(lx.CHANNELS, dtype=object)[
                        _choice_index(rng, np.array([s.channel_mix for s in SEGMENTS]), seg)
                    ],
                    "product_category": np.array(lx.CATEGORIES, dtype=object)[
                        _choice_index(rng, np.array([s.category_mix for s in SEGMENTS]), seg)
                    ],
                }
            )
        )

        s_who, s_start = sessions
        written = np.flatnonzero(s_start <= self.as_of_end)  # as the generator: sessions started by as_of
        number = np.full(len(s_who), -1)
        number[written] = self.next_id["sessions"] + np.arange(len(written))
        self.next_id["sessions"] += len(written)
        p_who, p_ts, p_session = pages
        rows = np.flatnonzero(number[p_session] >= 0)
        rows = rows[np.argsort(p_ts[rows], kind="stable")]
        page = np.array(lx.PAGES, dtype=object)[rng.integers(0, len(lx.PAGES), len(rows))]
        page[rng.random(len(rows)) < CANCEL_PAGE_SHARE] = lx.CANCEL_PAGE
        self.added["web_events"].append(
            pd.DataFrame(
                {
                    "ts": pd.to_datetime(p_ts[rows], unit="s"),
                    "customer_id": self._event_ids(chunk, p_who[rows], p_ts[rows]),
                    "email": None,
                    "anonymous_id": chunk.cookie[p_who[rows]],
                    "event_type": "page_view",
                    "page": page,
                    "session_id": np.array([f"SK{x:09d}" for x in number[p_session[rows]]], dtype=object),
                }
            )
        )

        campaign = chunk.email_draws[0]
        e_who = np.concatenate([opens[0], clicks[0]])
        e_ts = np.concatenate([opens[1], clicks[1]])
        kind = np.array(["open"] * len(opens[0]) + ["click"] * len(clicks[0]), dtype=object)
        send = np.concatenate([opens[2], clicks[2]])
        keep = np.flatnonzero(e_ts <= self.as_of_end)
        keep = keep[np.argsort(e_ts[keep], kind="stable")]
        self.added["email_events"].append(
            pd.DataFrame(
                {
                    "customer_id": self._event_ids(chunk, e_who[keep], e_ts[keep]),
                    "email": None,
                    "ts": pd.to_datetime(e_ts[keep], unit="s"),
                    "event_type": kind[keep],
                    "campaign_id": campaign[send[keep]].astype(object),
                }
            )
        )

    # at the end -----------------------------------------------------------------------------------------
    def _check_resolved(self) -> None:
        unknown = self.original < 0
        if unknown.any():
            raise ValueError(
                f"campaign assignments name {self.ids[unknown][0]!r}, a duplicate record id this company does not have"
            )

    def added_rows(self) -> dict[str, pd.DataFrame]:
        """Per extract, the kept customers' rows to append after every chunk's rows."""
        self._check_resolved()
        return {name: pd.concat(frames, ignore_index=True) for name, frames in self.added.items() if frames}

    def write(self, out: Path, fmt: str) -> tuple[Path, int, dict]:
        """Write the interventions extract and truth/campaign.csv; return the extract's path, its rows and
        the manifest's "campaign" summary."""
        self._check_resolved()
        plan = self.plan
        contacted = np.flatnonzero(self.contacted)
        dates = pd.Series(
            [plan.date + dt.timedelta(days=int(d)) for d in self.contact_day[contacted]], dtype=object
        )
        interventions = pd.DataFrame(
            {
                "customer_id": self.ids[contacted],
                "date": dates.map(dt.date.isoformat).to_numpy(dtype=object),
                "campaign": np.array([plan.campaigns[t] for t in self.tier[contacted]], dtype=object),
                "channel": np.array([plan.channels[t] for t in self.tier[contacted]], dtype=object),
            }
        )
        # like every extract, nothing dated after as_of: contacts made later are in truth/campaign.csv only
        interventions = interventions[(dates <= self.cfg.as_of).to_numpy()]
        interventions = interventions.sort_values(["date", "customer_id"], kind="stable", ignore_index=True)
        path = out / f"interventions.{'csv' if fmt == 'csv' else 'parquet'}"
        sink = _Sink(path, fmt)
        try:
            sink.write(interventions)
        finally:
            sink.close()

        original_ids = np.array([customer_id(int(i)) for i in self.original], dtype=object)
        truth = pd.DataFrame(
            {
                "customer_id": self.ids,
                "original_id": original_ids,
                "tier": self.tier,
                "arm": self.arm,
                "contacted": self.contacted,
                "kept": self.kept,
                "won_back": self.won_back,
                "churned_without_campaign": self.churned_without,
                "churned_with_campaign": self.churned_with,
            },
            columns=CAMPAIGN_TRUTH_COLUMNS,
        )
        truth.to_csv(out / "truth" / "campaign.csv", index=False)
        return path, len(interventions), self.summary(truth)

    def summary(self, truth: pd.DataFrame) -> dict:
        plan = self.plan
        tiers = {}
        for tier in ACTION_TIERS:
            rows = truth[truth["tier"] == tier]
            treated = rows[rows["arm"] == TREATMENT]
            saved = int((treated["churned_without_campaign"] - treated["churned_with_campaign"]).sum())
            tiers[tier] = {
                "customers": {arm: int((rows["arm"] == arm).sum()) for arm in ARMS},
                "contacted": int(rows["contacted"].sum()),
                "kept": int(rows["kept"].sum()),  # kept or won back
                "won_back": int(rows["won_back"].sum()),
                "churned_without_campaign": int(treated["churned_without_campaign"].sum()),
                "churned_with_campaign": int(treated["churned_with_campaign"].sum()),
                # the true intention-to-treat effect on the activity label; None for an empty treatment arm
                "planted_uplift": saved / len(treated) if len(treated) else None,
            }
        return {
            "date": plan.date.isoformat(),
            "horizon_days": plan.horizon_days,
            "contact_window_days": CONTACT_WINDOW_DAYS,
            "effects": {t: float(plan.effects[t]) for t in ACTION_TIERS},
            "contact_rates": {t: float(plan.contact_rates[t]) for t in ACTION_TIERS},
            "channels": {t: plan.channels[t] for t in ACTION_TIERS},
            "campaigns": {t: plan.campaigns[t] for t in ACTION_TIERS},
            "assignments": len(truth),
            "tiers": tiers,
        }

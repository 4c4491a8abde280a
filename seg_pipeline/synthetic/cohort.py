"""Cohort scenario (`seg-pipeline generate --scenario cohort`): one acquisition quarter of a non-contractual
retailer, CRM and orders only, buying in the BG/NBD story, with FUTURE orders kept in truth/.

What it is for: reproducing the retail case where the pipeline's churn model lost to naive baselines. It
resembles the public CDNOW data: one cohort, orders only, most customers buy once or twice. Planted
covariates give a model with features something the plain BG/NBD model (which sees only frequency,
recency and age) cannot see, so a harness can measure, with the realized orders after as_of, whether the
pipeline beats BG/NBD and the naive baselines legitimately.

The story (Fader, Hardie & Lee 2005, "Counting your customers the easy way"; dropout also right after
the first purchase, as in the MBG/NBD variant of Batislam, Denizel & Filiztekin 2007):

- every customer signs up with a first purchase at a uniform moment of one 91-day quarter, which starts
  ``history_days`` before as_of (default 540, so several 90-day snapshots fit in the history);
- while alive, customer i buys as a Poisson process with rate lambda_i per day, lambda0_i ~ Gamma(shape r,
  rate alpha);
- after each purchase (the first included) the customer becomes inactive for good with probability p_i,
  p0_i ~ Beta(a, b);
- order values are gamma-gamma (Fader, Hardie & Lee 2005b): value ~ Gamma(shape spend_p, rate nu_i),
  nu_i ~ Gamma(shape spend_q, rate spend_gamma), times the product category's price level.

Planted covariate effects (CohortParameters; moderate on purpose, none decides a customer alone):

- ``acquisition_channel`` (in the CRM) multiplies lambda0 and shifts logit(p0): referral x1.35 / -0.7 (buy
  more often, stay longer), newsletter x1.15 / -0.3, search_ads neutral, social x0.85 / +0.5, marketplace
  x0.8 / +0.7 (bargain hunters who leave);
- the first order's ``product_category``: media and consumables (music, books, beauty) are bought again
  sooner and keep customers longer, durables (electronics, home) the opposite; marketplace customers start
  with electronics and home more often;
- the first order's amount relative to its category's typical amount: +0.3 on log lambda and -0.3 on
  logit p per log unit (clipped to +-2), so spend and frequency are not independent as gamma-gamma assumes;
- the order ``channel`` (web, app, store): the app's share rises with the customer's base rate lambda0,
  the store's falls (marketplace first orders come through the web);
- a later order repeats the first order's category with probability 0.6, else follows the category mix;
- ``country`` is drawn as in the demo and has no effect: a covariate that must not matter.

Simulated until as_of + 365 days: the extracts hold the orders up to as_of; truth/orders_after_as_of.csv
the later ones and truth/customers.csv each customer's rate, dropout probability and death date (the day
of the purchase after which they dropped out; empty when still alive at as_of + 365 days), so realized
outcomes after as_of can be measured.

Clean by default. --messiness / --rate apply the MessinessRates that fit a CRM-and-orders extract
(HONOURED_RATES); the injected problems are listed in truth/anomalies.csv, written only then.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import digamma, expit, logit, polygamma

from seg_pipeline.synthetic import lexicon as lx
from seg_pipeline.synthetic.generator import (
    CHUNK_SIZE,
    DAY_S,
    ORPHAN_BASE,
    MessinessRates,
    _choice_index,
    _flag,
    _Sink,
    _timestamps,
    customer_id,
    date_as_exported,
    write_table,
)

COHORT_DAYS = 91
FUTURE_DAYS = 365
DEFAULT_HISTORY_DAYS = 540
MIN_HISTORY_DAYS = 120  # the cohort quarter plus four weeks of observation after its last signup
PROGRESS_PARTS = 4  # progress(done, total) calls per chunk: simulated, tables built, extracts written, truth
SOURCES = ("crm_customers", "orders")
ORDER_CHANNELS = ("web", "app", "store")
# what a CRM-and-orders extract can suffer; the demo's contact, duplicate and web rates have no object here
HONOURED_RATES = (
    "missing_values",
    "amount_outliers",
    "negative_amounts",
    "invalid_dates",
    "future_dates",
    "orphan_events",
)
_STREAM = 0xC0407  # spawn key: the cohort's random stream differs from the demo's for the same seed


@dataclass(frozen=True)
class CohortParameters:
    """The population (BG/NBD and gamma-gamma) and the planted covariate effects; all times in days."""

    # CDNOW's BG/NBD estimates (Fader, Hardie & Lee 2005), weeks converted to days
    r: float = 0.243  # Gamma shape of the purchase rate lambda0
    alpha: float = 30.9  # Gamma rate (days) of lambda0: mean r / alpha = 0.0079 orders a day while alive
    a: float = 0.793  # Beta(a, b) dropout probability p0 after each purchase: mean 0.25
    b: float = 2.426
    spend_p: float = 6.25  # gamma-gamma spend (CDNOW's estimates): mean order value 35 before category
    spend_q: float = 3.74
    spend_gamma: float = 15.44
    first_amount_rate_effect: float = 0.3  # on log lambda, per log unit of first amount / category typical
    first_amount_dropout_effect: float = -0.3  # on logit p, per log unit
    category_loyalty: float = 0.6  # a later order repeats the first order's category
    app_rate_slope: float = 0.6  # channel logits per standard deviation of log lambda0
    store_rate_slope: float = -0.4
    # name -> (share of customers, lambda multiplier, logit(p) shift)
    acquisition_channels: dict[str, tuple[float, float, float]] = field(
        default_factory=lambda: {
            "search_ads": (0.34, 1.0, 0.0),
            "social": (0.2, 0.85, 0.5),
            "referral": (0.12, 1.35, -0.7),
            "marketplace": (0.18, 0.8, 0.7),
            "newsletter": (0.16, 1.15, -0.3),
        }
    )
    # name -> (share of first orders, lambda multiplier, logit(p) shift, price level)
    categories: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {
            "music": (0.3, 1.3, -0.2, 1.0),
            "books": (0.22, 1.2, -0.1, 0.9),
            "video": (0.15, 1.0, 0.0, 1.1),
            "electronics": (0.12, 0.7, 0.3, 3.0),
            "home": (0.09, 0.75, 0.2, 2.2),
            "beauty": (0.12, 1.25, -0.1, 1.2),
        }
    )
    # marketplace customers' first orders are electronics and home this many times more often
    marketplace_durables_boost: float = 2.5


@dataclass(frozen=True)
class CohortConfig:
    customers: int
    seed: int = 42
    as_of: dt.date = field(default_factory=lambda: dt.datetime.now(dt.UTC).date())
    format: Literal["csv", "parquet"] = "csv"
    history_days: int = DEFAULT_HISTORY_DAYS
    rates: MessinessRates = field(default_factory=lambda: MessinessRates().scaled(0))
    parameters: CohortParameters = field(default_factory=CohortParameters)

    @property
    def messy(self) -> bool:
        return any(getattr(self.rates, name) > 0 for name in HONOURED_RATES)


@dataclass
class CohortSummary:
    out_dir: Path
    rows: dict[str, int]  # extracts
    files: dict[str, Path]
    cohort_start: dt.date
    cohort_end: dt.date  # last signup day
    future_orders: int
    one_order_share: float  # of customers, orders up to as_of
    at_most_two_share: float
    alive_share: float  # alive at as_of (truth)
    anomalies: dict[str, int]


class _CohortChunk:
    """Simulates ``n`` customers starting at global index ``start``; the method order fixes the stream."""

    def __init__(self, cfg: CohortConfig, chunk_no: int, start: int, n: int, counters: dict[str, int]):
        self.cfg, self.par, self.rates = cfg, cfg.parameters, cfg.rates
        self.rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, chunk_no, _STREAM]))
        self.start, self.n, self.counters = start, n, counters
        self.as_of_end = int(dt.datetime.combine(cfg.as_of, dt.time(23, 59, 59), tzinfo=dt.UTC).timestamp())
        self.t0 = self.as_of_end + 1 - cfg.history_days * DAY_S
        self.end = self.as_of_end + FUTURE_DAYS * DAY_S

    def customers(self) -> None:
        rng, n, par = self.rng, self.n, self.par
        self.ids = np.array([customer_id(self.start + i) for i in range(n)], dtype=object)
        self.signup = self.t0 + (rng.random(n) * COHORT_DAYS * DAY_S).astype(np.int64)
        self.country = rng.choice(len(lx.COUNTRIES), n, p=lx.COUNTRY_WEIGHTS)
        acq = par.acquisition_channels
        self.acq = rng.choice(len(acq), n, p=_normalized([v[0] for v in acq.values()]))
        cats = par.categories
        mix = np.tile(_normalized([v[0] for v in cats.values()]), (len(acq), 1))
        durables = [list(cats).index(c) for c in ("electronics", "home") if c in cats]
        if "marketplace" in acq:
            mix[list(acq).index("marketplace"), durables] *= par.marketplace_durables_boost
        self.first_cat = _choice_index(rng, mix / mix.sum(axis=1, keepdims=True), self.acq)
        self.price = np.array([v[3] for v in cats.values()])
        self.nu = rng.gamma(par.spend_q, 1 / par.spend_gamma, n)  # gamma-gamma: customer's spend scale
        self.first_amount = rng.gamma(par.spend_p, 1 / self.nu) * self.price[self.first_cat]
        typical = par.spend_p * par.spend_gamma / (par.spend_q - 1) * self.price[self.first_cat]
        z_amount = np.clip(np.log(self.first_amount / typical), -2, 2)

        lam0 = rng.gamma(par.r, 1 / par.alpha, n)
        p0 = np.clip(rng.beta(par.a, par.b, n), 1e-9, 1 - 1e-9)  # a Beta draw may round to 0 or 1
        acq_eff = np.array([v[1:] for v in acq.values()])[self.acq]
        cat_eff = np.array([v[1:3] for v in cats.values()])[self.first_cat]
        self.lam = lam0 * acq_eff[:, 0] * cat_eff[:, 0] * np.exp(par.first_amount_rate_effect * z_amount)
        self.p = np.clip(
            expit(logit(p0) + acq_eff[:, 1] + cat_eff[:, 1] + par.first_amount_dropout_effect * z_amount),
            1e-6,
            1 - 1e-6,
        )
        # the channel model sees the customer's own disposition (lambda0), in the population's units
        z_rate = np.clip(
            (np.log(np.maximum(lam0, 1e-300)) - (digamma(par.r) - np.log(par.alpha)))
            / np.sqrt(polygamma(1, par.r)),
            -2,
            2,
        )
        logits = np.stack(
            [np.zeros(n), -0.9 + par.app_rate_slope * z_rate, -1.3 + par.store_rate_slope * z_rate]
        )
        weights = np.exp(logits).T
        self.channel_p = weights / weights.sum(axis=1, keepdims=True)

    def simulate(self) -> None:
        """Purchases until death or as_of + FUTURE_DAYS: the first at signup, repeats as a Poisson process.

        Purchases before dying ~ Geometric(p). Given M Poisson events in the window, their moments are M
        sorted uniforms; only the first k = min(purchases - 1, M) are needed, drawn exactly in O(k): the
        j-th of M sorted uniforms is S_j / S_(M+1) for cumulative sums S of Exp(1) draws, and
        S_(M+1) - S_k ~ Gamma(M + 1 - k).
        """
        rng, n = self.rng, self.n
        purchases = rng.geometric(self.p)
        window = (self.end - self.signup).astype(np.float64)
        events = rng.poisson(self.lam * window / DAY_S)
        k = np.minimum(purchases - 1, events)
        who = np.repeat(np.arange(n), k)
        gaps = rng.exponential(1.0, len(who))
        sums = np.concatenate([[0.0], np.cumsum(gaps)])
        first = np.cumsum(k) - k
        local = sums[1:] - sums[first][who]
        total = sums[first + k] - sums[first] + rng.gamma(events - k + 1.0)
        self.repeat_who = who
        self.repeat_ts = self.signup[who] + (local / total[who] * window[who]).astype(np.int64)
        # dropping out happens right after a purchase: the last one, if it came before the window closed
        last = self.signup.copy()
        repeated = k > 0
        last[repeated] = self.repeat_ts[(first + k - 1)[repeated]]
        self.death_ts = np.where(purchases - 1 <= events, last, np.iinfo(np.int64).max)

        loyal = rng.random(len(who)) < self.par.category_loyalty
        mix = _normalized([v[0] for v in self.par.categories.values()])
        self.repeat_cat = np.where(loyal, self.first_cat[who], rng.choice(len(mix), len(who), p=mix))
        self.repeat_amount = rng.gamma(self.par.spend_p, 1 / self.nu[who]) * self.price[self.repeat_cat]
        self.repeat_channel = _choice_index(rng, self.channel_p, who)
        first_channel = _choice_index(rng, self.channel_p, np.arange(n))
        if "marketplace" in self.par.acquisition_channels:
            marketplace = self.acq == list(self.par.acquisition_channels).index("marketplace")
            first_channel[marketplace] = ORDER_CHANNELS.index("web")
        self.first_channel = first_channel
        self.orders_by_as_of = 1 + np.bincount(who[self.repeat_ts <= self.as_of_end], minlength=n)

    # tables ---------------------------------------------------------------------------------------
    def _all_orders(self) -> pd.DataFrame:
        cats = np.array(list(self.par.categories), dtype=object)
        channels = np.array(ORDER_CHANNELS, dtype=object)
        return pd.DataFrame(
            {
                "who": np.concatenate([np.arange(self.n), self.repeat_who]),
                "ts": np.concatenate([self.signup, self.repeat_ts]),
                # nothing in the shop costs less than 0.50
                "amount": np.round(
                    np.maximum(np.concatenate([self.first_amount, self.repeat_amount]), 0.5), 2
                ),
                "channel": channels[np.concatenate([self.first_channel, self.repeat_channel])],
                "product_category": cats[np.concatenate([self.first_cat, self.repeat_cat])],
            }
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        everything = self._all_orders()
        past = everything["ts"].to_numpy() <= self.as_of_end
        orders = self._orders(everything[past])
        future = everything[~past].sort_values("ts", kind="stable", ignore_index=True)
        base = self.counters["future_orders"]
        self.counters["future_orders"] += len(future)
        after = pd.DataFrame(
            {
                "order_id": np.array([f"F{base + i:09d}" for i in range(len(future))], dtype=object),
                "customer_id": self.ids[future["who"].to_numpy()],
                "order_date": future["ts"].to_numpy(),
                "amount": future["amount"].to_numpy(),
            }
        )
        return {
            "crm_customers": self._crm(),
            "orders": orders,
            "orders_after_as_of": _timestamps(after, ("order_date",)),
            "customers": self._truth(),
        }

    def _crm(self) -> pd.DataFrame:
        rng, n = self.rng, self.n
        frame = pd.DataFrame(
            {
                "customer_id": self.ids,
                "signup_date": pd.to_datetime(self.signup, unit="s")
                .strftime("%Y-%m-%d")
                .to_numpy(dtype=object),
                "country": np.array(lx.COUNTRIES, dtype=object)[self.country],
                "acquisition_channel": np.array(list(self.par.acquisition_channels), dtype=object)[self.acq],
                "_anomaly": None,
            }
        )
        if not self.cfg.messy:
            return frame
        _missing(rng, frame, ("country", "acquisition_channel"), self.rates.missing_values)
        mask = rng.random(n) < self.rates.invalid_dates
        frame.loc[mask, "signup_date"] = np.array(lx.INVALID_DATE_TEXT, dtype=object)[
            rng.integers(0, len(lx.INVALID_DATE_TEXT), mask.sum())
        ]
        _flag(frame, mask, "invalid_date", "signup_date")
        mask = (rng.random(n) < self.rates.future_dates) & ~mask
        future = pd.to_datetime(self.as_of_end + rng.uniform(30, 400, mask.sum()) * DAY_S, unit="s")
        frame.loc[mask, "signup_date"] = future.strftime("%Y-%m-%d").to_numpy(dtype=object)
        _flag(frame, mask, "future_date", "signup_date")
        return frame

    def _orders(self, past: pd.DataFrame) -> pd.DataFrame:
        rng, rates = self.rng, self.rates
        frame = pd.DataFrame(
            {
                "order_id": None,
                "customer_id": self.ids[past["who"].to_numpy()],
                "order_date": past["ts"].to_numpy(),
                "amount": past["amount"].to_numpy(),
                "channel": past["channel"].to_numpy(),
                "product_category": past["product_category"].to_numpy(),
                "_anomaly": None,
            }
        )
        if self.cfg.messy:  # the demo's kinds of order problems, at the honoured rates
            rows = len(frame)
            mask = rng.random(rows) < rates.orphan_events
            base = ORPHAN_BASE + self.counters["orphans"]
            self.counters["orphans"] += int(mask.sum())
            frame.loc[mask, "customer_id"] = [customer_id(base + i) for i in range(int(mask.sum()))]
            _flag(frame, mask, "orphan_id", "customer_id")
            mask = rng.random(rows) < rates.missing_values * 0.1
            frame.loc[mask, "customer_id"] = None
            _flag(frame, mask, "missing_required", "customer_id")
            _missing(rng, frame, ("channel", "product_category"), rates.missing_values)
            mask = rng.random(rows) < rates.amount_outliers
            frame.loc[mask, "amount"] = np.round(
                frame.loc[mask, "amount"] * rng.uniform(50, 500, mask.sum()), 2
            )
            _flag(frame, mask, "amount_outlier", "amount")
            mask = rng.random(rows) < rates.negative_amounts
            frame.loc[mask, "amount"] = -frame.loc[mask, "amount"].abs()
            _flag(frame, mask, "negative_amount", "amount")
            mask = rng.random(rows) < rates.future_dates
            shift = (rng.uniform(1, 365, mask.sum()) * DAY_S).astype(np.int64)
            frame.loc[mask, "order_date"] = self.as_of_end + shift
            _flag(frame, mask, "future_date", "order_date")
            mask = rng.random(rows) < rates.invalid_dates
            frame.loc[mask, "order_date"] = int(dt.datetime(1900, 1, 1, tzinfo=dt.UTC).timestamp())
            _flag(frame, mask, "invalid_date", "order_date")
        frame = frame.sort_values("order_date", kind="stable", ignore_index=True)
        base = self.counters["orders"]
        self.counters["orders"] += len(frame)
        frame["order_id"] = np.array([f"O{base + i:09d}" for i in range(len(frame))], dtype=object)
        return _timestamps(frame, ("order_date",))

    def _truth(self) -> pd.DataFrame:
        dead = self.death_ts < self.end
        death = pd.to_datetime(np.where(dead, self.death_ts, 0), unit="s").strftime("%Y-%m-%d")
        return pd.DataFrame(
            {
                "customer_id": self.ids,
                "signup_date": pd.to_datetime(self.signup, unit="s").strftime("%Y-%m-%d"),
                "acquisition_channel": np.array(list(self.par.acquisition_channels), dtype=object)[self.acq],
                "first_order_category": np.array(list(self.par.categories), dtype=object)[self.first_cat],
                "lambda_per_day": self.lam,
                "dropout_p": self.p,
                # expected value of an order in the first order's category
                "mean_order_value": self.par.spend_p / self.nu * self.price[self.first_cat],
                "alive_at_as_of": self.death_ts > self.as_of_end,
                "death_date": np.where(dead, death, None),
                "orders_by_as_of": self.orders_by_as_of,
            }
        )


def _normalized(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _missing(rng: np.random.Generator, frame: pd.DataFrame, columns: tuple[str, ...], rate: float) -> None:
    for column in columns:
        mask = (rng.random(len(frame)) < rate) & frame[column].notna().to_numpy()
        frame.loc[mask, column] = None
        _flag(frame, mask, "missing_value", column)


_TRUTH_HEADERS = {
    "customers": "customer_id,signup_date,acquisition_channel,first_order_category,lambda_per_day,dropout_p,"
    "mean_order_value,alive_at_as_of,death_date,orders_by_as_of",
    "orders_after_as_of": "order_id,customer_id,order_date,amount",
    "anomalies": "source,source_row,key,kind,column",
}


def generate_cohort(
    cfg: CohortConfig, out_dir: str | Path, progress: Callable[[int, int], None] | None = None
) -> CohortSummary:
    """Write crm_customers and orders to ``out_dir`` and the truth to ``out_dir/truth``.

    ``progress(done, total)`` is called PROGRESS_PARTS times per chunk of CHUNK_SIZE customers, as in
    generator.generate.
    """
    if cfg.customers < 1:
        raise ValueError("customers must be at least 1")
    if cfg.history_days < MIN_HISTORY_DAYS:
        raise ValueError(
            f"history_days must be at least {MIN_HISTORY_DAYS} for the cohort scenario (its "
            f"{COHORT_DAYS}-day acquisition quarter plus four weeks of buying), got {cfg.history_days}"
        )
    out = Path(out_dir)
    truth_dir = out / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    ext = "csv" if cfg.format == "csv" else "parquet"
    files = {name: out / f"{name}.{ext}" for name in SOURCES}
    sinks = {name: _Sink(path, cfg.format) for name, path in files.items()}
    truth_names = ("customers", "orders_after_as_of", *(("anomalies",) if cfg.messy else ()))
    truth_sinks = {name: _Sink(truth_dir / f"{name}.csv", "csv") for name in truth_names}
    counters = {"orders": 0, "future_orders": 0, "orphans": 0}
    anomaly_counts: dict[str, int] = {}
    one = at_most_two = alive = 0
    try:
        for chunk_no, start in enumerate(range(0, cfg.customers, CHUNK_SIZE)):
            chunk = _CohortChunk(cfg, chunk_no, start, min(CHUNK_SIZE, cfg.customers - start), counters)

            def tick(part: int, start: int = start, chunk: _CohortChunk = chunk) -> None:
                if progress is not None:
                    progress(start + chunk.n * part // PROGRESS_PARTS, cfg.customers)

            chunk.customers()
            chunk.simulate()
            tick(1)
            tables = chunk.tables()
            tick(2)
            for name in SOURCES:
                frame = tables[name]
                anomalies = frame.pop("_anomaly")
                write_table(name, frame, anomalies, sinks[name], truth_sinks.get("anomalies"), anomaly_counts)
            tick(3)
            truth_sinks["customers"].write(tables["customers"])
            if len(tables["orders_after_as_of"]):
                truth_sinks["orders_after_as_of"].write(tables["orders_after_as_of"])
            one += int((chunk.orders_by_as_of == 1).sum())
            at_most_two += int((chunk.orders_by_as_of <= 2).sum())
            alive += int((chunk.death_ts > chunk.as_of_end).sum())
            tick(PROGRESS_PARTS)
    finally:
        for sink in (*sinks.values(), *truth_sinks.values()):
            sink.close()
    for name, sink in truth_sinks.items():
        if sink.rows == 0:  # no order after as_of in a tiny company: still leave a readable file
            (truth_dir / f"{name}.csv").write_text(_TRUTH_HEADERS[name] + "\n", encoding="utf-8")

    cohort_start = cfg.as_of - dt.timedelta(days=cfg.history_days - 1)
    cohort_end = cohort_start + dt.timedelta(days=COHORT_DAYS - 1)
    rows = {name: sink.rows for name, sink in sinks.items()}
    summary = CohortSummary(
        out_dir=out,
        rows=rows,
        files=files,
        cohort_start=cohort_start,
        cohort_end=cohort_end,
        future_orders=counters["future_orders"],
        one_order_share=one / cfg.customers,
        at_most_two_share=at_most_two / cfg.customers,
        alive_share=alive / cfg.customers,
        anomalies=dict(sorted(anomaly_counts.items())),
    )
    manifest = {
        "generator": "seg_pipeline.synthetic.cohort",
        "scenario": "cohort",
        "customers": cfg.customers,
        "seed": cfg.seed,
        "as_of": cfg.as_of.isoformat(),
        "history_days": cfg.history_days,
        "cohort_start": cohort_start.isoformat(),
        "cohort_end": cohort_end.isoformat(),
        "future_days": FUTURE_DAYS,
        "format": cfg.format,
        "rates": {name: getattr(cfg.rates, name) for name in HONOURED_RATES},
        "parameters": asdict(cfg.parameters),
        "rows": {**rows, "orders_after_as_of": counters["future_orders"]},
        "shares": {
            "one_order_by_as_of": round(summary.one_order_share, 4),
            "at_most_two_orders_by_as_of": round(summary.at_most_two_share, 4),
            "alive_at_as_of": round(summary.alive_share, 4),
        },
        "anomalies": summary.anomalies,
    }
    (truth_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    date_as_exported(files.values(), cfg.as_of)
    return summary

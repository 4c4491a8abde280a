"""The one configuration model: defaults < YAML file < SEG_* env vars < CLI overrides, validated once.

Env vars: ``SEG_CONFIG`` names the YAML file; ``SEG_<KEY>`` overrides a key, with ``__`` between nested
keys (``SEG_AS_OF=2024-06-30``, ``SEG_SEGMENTATION__K_MAX=8``, ``SEG_SOURCES__ORDERS__PATH=x.csv``).
CLI: ``--set segmentation.k_max=8`` (any key) and the named flags ``--home`` / ``--as-of``.
Relative paths in the YAML file are relative to the file; others to the working directory.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.redact import has_password, redact
from seg_pipeline.sources.contracts import CONTRACTS, RESERVED_COLUMNS, SOURCE_NAMES
from seg_pipeline.sources.files import FILE_NOT_FOUND, file_problem, unreadable_reason

ENV_PREFIX = "SEG_"
CONFIG_ENV = "SEG_CONFIG"
SOURCE_EXTENSIONS = (".csv", ".csv.gz", ".tsv", ".txt", ".parquet", ".pq")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _strict_date(value: Any) -> Any:
    # YAML turns 2024-06-30 into a date; strings must be exactly ISO so 06/30/2024 is not guessed at.
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"invalid date {value!r}, expected YYYY-MM-DD") from None
    return value


class SourceConfig(_Model):
    path: Path | None = Field(None, description="extract file; default: <landing>/<source>.csv|.parquet")
    columns: dict[str, str] = Field(
        default_factory=dict, description="column mapping, canonical name -> name in your file"
    )
    format: Literal["csv", "parquet"] | None = Field(None, description="default: from the file extension")
    delimiter: str | None = Field(None, description="CSV delimiter; default: sniffed")
    encoding: str = "utf-8"
    exported_on: dt.date | None = Field(
        None, description="the day the extract was exported; default: the file's modification date, UTC"
    )

    @field_validator("exported_on", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        return _strict_date(value)

    @field_validator("columns", mode="before")
    @classmethod
    def _mapping_is_flat(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of canonical column -> your column name")
        for canonical, theirs in value.items():
            if not isinstance(theirs, str) or not theirs.strip():
                raise ValueError(f"'{canonical}' must map to a non-empty column name, got {theirs!r}")
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_char(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"must be a single character, got {value!r}")
        return value


# Canonical CRM columns that describe a customer without identifying them: usable as categorical features.
DESCRIPTIVE_CRM_COLUMNS = frozenset({"country", "industry", "company_size", "plan"})


class CustomerAttributes(_Model):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> CustomerAttributes:
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"listed as both numeric and categorical: {sorted(both)}")
        canonical = set(CONTRACTS["crm_customers"].column_names)
        clash = (set(self.numeric) & canonical) | (
            set(self.categorical) & (canonical - DESCRIPTIVE_CRM_COLUMNS)
        )
        if clash:
            raise ValueError(
                f"{sorted(clash)} are canonical CRM columns that cannot be features; of those only "
                f"{sorted(DESCRIPTIVE_CRM_COLUMNS)} may be listed, as categorical"
            )
        reserved = [name for name in self.names if name in RESERVED_COLUMNS]
        if reserved:
            what = "; ".join(f"{name!r} is {RESERVED_COLUMNS[name]}" for name in reserved)
            raise ValueError(
                f"{what}: the pipeline adds a column of that name, which would replace yours. List your "
                "column under another name and map it to the one in the file, e.g. "
                f"sources.crm_customers.columns: {{crm_{reserved[0]}: {reserved[0]}}}"
            )
        return self

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]


MOVED_TO_ACTIONS = {
    "tiers": "actions.personal_outreach / semi_automated / automated (capacities, not score cut-offs)",
    "high_value_quantile": "actions: customers are ranked by expected loss (probability x value)",
    "retention_min_risk_score": "actions: the retention list is the personal_outreach and semi_automated tiers",
}


class TierCapacity(_Model):
    """How many customers one action tier takes, in order of expected loss: a count, a share of the scored
    customers, or a budget divided by the cost of one contact."""

    customers: int | None = Field(None, ge=0, description="this many customers")
    share: float | None = Field(None, ge=0, le=1, description="this share of the scored customers")
    budget: float | None = Field(
        None, ge=0, description="as many contacts as the budget pays at cost_per_contact"
    )
    cost_per_contact: float | None = Field(
        None,
        ge=0,
        description="cost of one contact in report.currency; needed with budget, counted in the report",
    )
    save_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="assumed share of contacted churners this action keeps (a planning figure)",
    )
    suggested_action: str = Field(
        "", max_length=300, description="what the team does for a customer of this tier"
    )

    @model_validator(mode="after")
    def _one_size(self) -> TierCapacity:
        given = [name for name in ("customers", "share", "budget") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of customers, share or budget (given: {', '.join(given) or 'none'})"
            )
        if self.budget is not None and not self.cost_per_contact:
            raise ValueError("budget needs cost_per_contact (above 0) to say how many contacts it pays")
        return self

    def size(self, scored: int) -> int:
        """The tier's capacity in customers when ``scored`` customers were scored."""
        if self.customers is not None:
            return self.customers
        if self.share is not None:
            return int(round(self.share * scored))
        return int(self.budget // self.cost_per_contact)

    def rule(self) -> str:
        """The capacity in words, for the report and metadata."""
        if self.customers is not None:
            return f"{self.customers:,} customers"
        if self.share is not None:
            return f"{self.share:.1%} of scored customers"
        return f"budget {self.budget:,.0f} at {self.cost_per_contact:,.2f} per contact"


# Defaults: a list a small team can work on a typical customer base (5 % of customers called or e-mailed
# personally), and save rates that are planning assumptions, not measurements (the outcome issue measures).
_DEFAULT_TIERS = {
    "personal_outreach": TierCapacity(
        share=0.01, save_rate=0.25,
        suggested_action="Call within a week: a customer-success manager asks what is wrong and offers help",
    ),
    "semi_automated": TierCapacity(
        share=0.04, save_rate=0.1,
        suggested_action="Personal e-mail from the account team with a tailored offer; follow up on reply",
    ),
    "automated": TierCapacity(
        share=0.15, save_rate=0.03, suggested_action="Automated win-back campaign: reminder and incentive e-mails"
    ),
}  # fmt: skip


class ControlGroupConfig(_Model):
    """The hold-out that measures what contacting achieves: a share of every action tier is assigned to the
    control arm by a keyed hash of the customer key, the campaign and the period, so a customer keeps their
    arm for the whole period (every run of it agrees) and a new period draws again. Controls stay in their
    tier (they count against its capacity) but are never on a contact list."""

    share: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="share of each action tier held out as the control arm (0: no control group)",
    )
    period: Literal["week", "month", "quarter"] = Field(
        "month",
        description="how long an assignment holds: ISO week, calendar month or quarter of the run's as_of",
    )
    campaign: str = Field(
        "retention",
        min_length=1,
        max_length=100,
        description="name of the retention programme; part of the hash, so a new name draws new arms",
    )


class ActionsConfig(_Model):
    """Who to contact: the customers with marketing consent ranked by expected loss (churn probability x
    their 365-day spend), the first personal_outreach.size of them personal outreach, the next
    semi_automated.size semi-automated, the next automated.size automated campaigns. The retention list is
    the first two tiers. The churn probability itself stays the calibrated one."""

    personal_outreach: TierCapacity = Field(default_factory=lambda: _DEFAULT_TIERS["personal_outreach"])
    semi_automated: TierCapacity = Field(default_factory=lambda: _DEFAULT_TIERS["semi_automated"])
    automated: TierCapacity = Field(default_factory=lambda: _DEFAULT_TIERS["automated"])
    min_expected_loss: float = Field(
        0.0,
        ge=0,
        description="customers whose expected loss is at or below this are in no action tier "
        "(with the default 0: customers who spent nothing in 365 days are not retention work)",
    )
    control: ControlGroupConfig = Field(default_factory=ControlGroupConfig)

    @model_validator(mode="before")
    @classmethod
    def _tier_defaults(cls, value: Any) -> Any:
        # a tier given only its size keeps its default save rate and suggested action
        if not isinstance(value, Mapping):
            return value
        merged = dict(value)
        for name, default in _DEFAULT_TIERS.items():
            given = merged.get(name)
            if isinstance(given, Mapping):
                merged[name] = {"save_rate": default.save_rate, "suggested_action": default.suggested_action,
                                **given}  # fmt: skip
        return merged

    def tiers(self) -> dict[str, TierCapacity]:
        return {"personal_outreach": self.personal_outreach, "semi_automated": self.semi_automated,
                "automated": self.automated}  # fmt: skip


class ReportConfig(_Model):
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$", description="ISO 4217 code money is shown in")
    locale: str = Field("en", description="number and currency format (a Babel locale, e.g. en, de_DE)")
    trend_runs: int = Field(12, ge=2, le=400, description="published runs the trend charts show")


class ChurnConfig(_Model):
    label: Literal["activity", "explicit"] = "activity"
    horizon_days: int = Field(90, ge=7, le=730)
    explicit_column: str = "churned"
    candidates: list[Literal["logistic_regression", "hist_gradient_boosting", "random_forest"]] = Field(
        default_factory=lambda: ["logistic_regression", "hist_gradient_boosting", "random_forest"]
    )
    snapshots: int = Field(
        4,
        ge=2,
        le=12,
        description="activity mode: labelled snapshots stacked for training; the latest (as_of - horizon) is "
        "the out-of-time holdout, the others lie from as_of - 2 x horizon back, as far as history allows",
    )
    snapshot_spacing_days: int | None = Field(
        None, ge=7, le=730, description="days between training snapshots; default: horizon_days"
    )
    baselines: list[Literal["recency", "rfm", "btyd"]] = Field(
        default_factory=lambda: ["recency", "rfm", "btyd"],
        description="naive models every training run is compared with on the holdout (those the data allow)",
    )
    baseline_metric: Literal["roc_auc", "pr_auc", "brier"] = Field(
        "roc_auc", description="the holdout metric the model must beat every baseline on"
    )
    baseline_margin: float = Field(
        0.0,
        ge=0,
        le=0.2,
        description="the model must beat the best baseline by more than this, else the baseline is used",
    )
    holdout_share: float = Field(0.25, gt=0.05, lt=0.5, description="explicit mode: stratified holdout share")
    validation_share: float = Field(
        0.2,
        gt=0.05,
        lt=0.5,
        description="of the training rows, kept back to pick the candidate and threshold",
    )
    promotion_metric: Literal["roc_auc", "pr_auc", "brier"] = "pr_auc"
    promotion_tolerance: float = Field(
        0.0, ge=0, le=0.2, description="a challenger may be this much worse and still become champion"
    )
    min_roc_auc: float = Field(
        0.6, ge=0.5, le=1, description="the churn_model gate: a model below this on the holdout is not used"
    )
    min_training_rows: int = Field(200, ge=20, description="fewer labelled customers than this fails the run")
    max_training_rows: int = Field(
        150_000, ge=1000, description="larger training splits are sampled (stratified) down to this size"
    )
    driver_features: int = Field(
        12, ge=3, le=100, description="features (by holdout importance) whose per-customer effect is measured"
    )
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, value: Any) -> Any:
        # keys of the first release that sized tiers by score cut-offs: say where they went, not "unknown"
        moved = [key for key in MOVED_TO_ACTIONS if isinstance(value, Mapping) and key in value]
        if moved:
            raise ValueError(
                f"churn.{moved[0]} was replaced by {MOVED_TO_ACTIONS[moved[0]]}; see README, Actions"
            )
        return value

    @property
    def spacing_days(self) -> int:
        return self.snapshot_spacing_days or self.horizon_days


class SegmentationConfig(_Model):
    k_min: int = Field(3, ge=2, le=30)
    k_max: int = Field(10, ge=2, le=30)
    micro_segments: int = Field(60, ge=50, le=100, description="finer groups nested inside the segments")
    features: list[str] | None = Field(
        None, description="features to cluster on; default: the catalogue's profile features + attributes"
    )
    algorithms: list[Literal["kmeans", "gmm", "agglomerative", "hdbscan"]] = Field(
        default_factory=lambda: ["kmeans", "gmm", "agglomerative", "hdbscan"]
    )
    fit_sample: int = Field(
        20_000, ge=500, description="customers the candidates are fitted on; the rest are assigned"
    )
    metric_sample: int = Field(5_000, ge=200, description="customers silhouette and stability use")
    hierarchical_sample: int = Field(
        3_000,
        ge=200,
        description="agglomerative/HDBSCAN fit on this many; the rest go to the nearest centroid",
    )
    stability_resamples: int = Field(3, ge=2, le=50, description="bootstrap refits for the stability ARI")
    min_stability: float = Field(
        0.6, ge=0, le=1, description="candidates less stable than this are not selected (unless none is)"
    )
    n_jobs: int = Field(-1, ge=-1, description="candidates fitted side by side in threads; -1: one per CPU")
    seed: int = 0

    @model_validator(mode="after")
    def _range(self) -> SegmentationConfig:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) must not exceed k_max ({self.k_max})")
        if not self.algorithms:
            raise ValueError("algorithms must name at least one of kmeans, gmm, agglomerative, hdbscan")
        return self


class LifecycleConfig(_Model):
    """Rules for lifecycle_stage, applied in this order; the first that matches wins, else 'steady'."""

    new_max_tenure_days: int = Field(90, ge=1, description="new: customer for at most this many days")
    dormant_min_recency_days: int = Field(180, ge=1, description="dormant: no activity for this long")
    at_risk_min_recency_days: int = Field(60, ge=1, description="at risk: no activity for this long, or")
    at_risk_overdue_factor: float = Field(
        2.5, gt=1, description="at risk: days since the last order > factor x the customer's usual gap"
    )
    champion_min_value_quantile: float = Field(
        0.8, gt=0, lt=1, description="champion: 365-day spend and orders at or above this quantile"
    )
    champion_max_recency_days: int = Field(30, ge=1, description="champion: and active this recently")
    growing_min_spend_trend: float = Field(
        0.3, gt=0, description="growing: log spend last 90 days minus the 90 before at least this"
    )

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if self.at_risk_min_recency_days >= self.dormant_min_recency_days:
            raise ValueError("at_risk_min_recency_days must be below dormant_min_recency_days")
        return self


# Settings are shown in the Dagster UI (resource config) and stored with every run, and config files and
# command lines are read by others (version control, shell history, `ps`): passwords come from env vars.
_PASSWORD_HELP = "configuration values are shown in the Dagster UI and stored with every run"


def _without_password(value: str | None, advice: str) -> str | None:
    if value is not None and has_password(value):
        raise ValueError(f"holds a password; {_PASSWORD_HELP}. {advice}")
    return value


class MlflowConfig(_Model):
    tracking_uri: str | None = Field(None, description="default: sqlite:///<home>/mlflow.db")
    ui_url: str = Field("http://127.0.0.1:5000", description="where `make mlflow` serves the MLflow UI")

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri_without_password(cls, value: str | None) -> str | None:
        return _without_password(
            value,
            "Leave it out of the URI: an MLflow server takes MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD, a PostgreSQL store PGPASSFILE (~/.pgpass) or PGPASSWORD",
        )

    @field_validator("ui_url")
    @classmethod
    def _ui_url_without_password(cls, value: str) -> str:
        return _without_password(value, "It is part of every MLflow link; let the browser log in instead")


class QualityConfig(_Model):
    expectations_dir: Path | None = Field(
        None, description="GX suites (JSON); default: the repository's expectations/"
    )
    max_row_count_drop: float = Field(
        0.5, ge=0, le=1, description="fail when rows fall by more than this share"
    )
    max_staleness_days: int = Field(
        30, ge=1, description="fail when an extract's newest date is older than this"
    )
    stale_record_days: int = Field(730, ge=30, description="flag CRM records not updated for this long")
    max_unparseable_share: float = Field(
        0.01,
        ge=0,
        le=1,
        description="rows with an unparseable required value up to this share go to quarantine",
    )


class PublishConfig(_Model):
    postgres_dsn: SecretStr | None = Field(None, description="or env SEG_PUBLISH_DSN; null = warehouse only")
    postgres_schema: str = Field("seg_pipeline", pattern=r"^[a-z_][a-z0-9_]*$",
                                 description="PostgreSQL schema of the published tables")  # fmt: skip
    lock_wait_seconds: float = Field(
        300,
        gt=0,
        description="how long a publish waits for another publish or for readers holding the tables",
    )

    @field_validator("postgres_dsn")
    @classmethod
    def _dsn_without_password(cls, value: SecretStr | None) -> SecretStr | None:
        _without_password(
            value.get_secret_value() if value is not None else None,
            "Set the whole DSN in the environment variable SEG_PUBLISH_DSN instead, or leave the password "
            "out of the DSN and give it to libpq by PGPASSFILE (~/.pgpass) or PGPASSWORD",
        )
        return value


DEFAULT_DRIFT_FEATURES = ["tenure_days", "recency_days", "frequency_365d", "monetary_365d", "avg_order_value",
                          "web_sessions_90d", "email_open_rate", "tickets_365d", "satisfaction_mean"]  # fmt: skip


class MonitoringConfig(_Model):
    drift_features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DRIFT_FEATURES),
        description="features compared with the last publish (PSI); the churn score is always compared",
    )
    psi_threshold: float = Field(0.2, gt=0, description="PSI above this raises the drift check's warning")
    psi_bins: int = Field(10, ge=4, le=50, description="quantile bins of the reference distribution")
    min_realized_roc_auc: float = Field(
        0.6,
        ge=0.5,
        le=1,
        description="the outcome check warns when an earlier run's scores ranked realized churn worse than this",
    )
    max_calibration_error: float = Field(
        0.1,
        gt=0,
        le=1,
        description="the outcome check warns when predicted and realized churn differ by more than this "
        "(expected calibration error over probability deciles)",
    )


class OrchestrationConfig(_Model):
    schedule_cron: str = Field("0 2 * * *", description="nightly full refresh (cron, in schedule_timezone)")
    schedule_timezone: str = "UTC"
    landing_sensor_interval_seconds: int = Field(60, ge=10)
    landing_settle_seconds: int = Field(
        60, ge=0, description="extracts must be unchanged this long before the sensor starts a run"
    )
    sources_stable_seconds: float = Field(
        2,
        ge=0,
        description="`seg-pipeline run` waits until every extract's size and modification time have been "
        "unchanged this long (a copy still being written); 0: no wait",
    )
    sources_stable_timeout_seconds: float = Field(
        120, gt=0, description="how long `seg-pipeline run` waits for that before it stops, naming the files"
    )
    io_retries: int = Field(3, ge=0, le=10, description="retries of I/O steps (extract reads, publish)")
    io_retry_delay_seconds: float = Field(5, ge=0, description="first retry delay; doubles with each retry")
    handoff_memory_mb: int | None = Field(
        None,
        ge=0,
        description="a run hands the tables it writes to its later steps in memory, up to this many MB "
        "held at once (the rest are read back from the warehouse); 0 reads every input back; "
        "unset: a quarter of the machine's memory",
    )
    freshness_warn_hours: int = Field(
        26, ge=1, description="published tables older than this: freshness warns"
    )
    freshness_fail_hours: int = Field(50, ge=2, description="older than this: freshness fails")
    owners: list[str] = Field(
        default_factory=lambda: ["team:customer-analytics"],
        min_length=1,
        description="Dagster owners of every asset: e-mail addresses or team:<name>",
    )
    docs_host: str = Field("127.0.0.1", description="where `seg-pipeline dev` serves Data Docs and reports")
    docs_port: int = Field(3001, ge=1, le=65535, description="their port (the Dagster UI keeps its own)")

    @property
    def docs_url(self) -> str:
        """The base URL of the Data Docs and report server that `seg-pipeline dev` starts."""
        return f"http://{self.docs_host}:{self.docs_port}"

    @property
    def handoff_budget_mb(self) -> int:
        """``handoff_memory_mb``, or a quarter of the machine's physical memory when it is not set."""
        if self.handoff_memory_mb is not None:
            return self.handoff_memory_mb
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4 // (1024 * 1024)

    @field_validator("schedule_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        # the shape here; whether Dagster can schedule it is checked where the schedule is built
        # (platform/settings.py check_schedule), as the model stays free of Dagster
        if len(value.split()) != 5 or not re.fullmatch(r"[0-9A-Za-z*,/\-? ]+", value):
            raise ValueError(f"not a valid cron expression: {value!r} (e.g. '0 2 * * *')")
        return value

    @field_validator("owners")
    @classmethod
    def _owner_names(cls, value: list[str]) -> list[str]:
        email = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
        bad = [o for o in value if not (email.match(o) or re.match(r"^team:[A-Za-z0-9_.-]+$", o))]
        if bad:
            raise ValueError(
                f"owners must be e-mail addresses or team:<name> (letters, digits, _ . -): {bad}"
            )
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Europe/Madrid')") from None
        return value

    @model_validator(mode="after")
    def _windows_ordered(self) -> OrchestrationConfig:
        if self.freshness_warn_hours >= self.freshness_fail_hours:
            raise ValueError("freshness_warn_hours must be below freshness_fail_hours")
        if self.sources_stable_seconds >= self.sources_stable_timeout_seconds:
            raise ValueError("sources_stable_seconds must be below sources_stable_timeout_seconds")
        return self


class PrivacyConfig(_Model):
    pseudonymization_key_env: str = "SEG_PSEUDO_KEY"
    retention_days: int = Field(1095, ge=30)
    default_consent: bool = Field(True, description="profiling consent where the CRM records none")
    default_marketing_consent: bool = Field(
        False,
        description="marketing consent where the CRM records none (no consent_marketing column or an empty "
        "cell); false: such customers are on no contact list (tier no_consent)",
    )


# Long forms and spellings cleanco (seg_pipeline/cleaning/normalize.py) does not strip on its own; a
# company's own list goes in identity.extra_legal_forms and replaces this one.
DEFAULT_EXTRA_LEGAL_FORMS = (
    "Gesellschaft mit beschränkter Haftung", "Aktiengesellschaft", "Kommanditgesellschaft", "e.K.", "e.Kfm.",
    "Sociedad Limitada", "Sociedad Limitada Unipersonal", "S.L.U.", "Sociedad Anónima",
    "Société anonyme", "Société par actions simplifiée", "Société à responsabilité limitée",
    "Società per azioni", "Società a responsabilità limitata", "Spółka z ograniczoną odpowiedzialnością",
    "Spółka akcyjna", "Besloten Vennootschap", "Naamloze Vennootschap", "Aktiebolag", "publ", "Osakeyhtiö",
    "Kabushiki Kaisha", "Godo Kaisha", "Public Limited Company", "Limited Liability Company",
    "Proprietary Limited", "Sociedade Limitada",
)  # fmt: skip


class IdentityConfig(_Model):
    """Identity resolution in the clean stage: normalization, exact rules and the probabilistic matcher."""

    default_region: str | None = Field(
        None, pattern=r"^[A-Za-z]{2}$",
        description="ISO country for phone numbers of records without a (known) country; null: such national numbers are invalid",
    )  # fmt: skip
    extra_legal_forms: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXTRA_LEGAL_FORMS),
        description="legal-form spellings stripped from company names besides cleanco's own",
    )
    probabilistic: bool = Field(
        True, description="score pairs with the Fellegi-Sunter model besides the exact rules"
    )
    merge_threshold: float = Field(
        0.95, gt=0, lt=1, description="match probability at or above which two records are merged"
    )
    review_threshold: float = Field(
        0.5, gt=0, lt=1,
        description="pairs from here up to merge_threshold are not merged but listed in clean.identity_review",
    )  # fmt: skip
    household_vetoes: bool = Field(
        True,
        description="never merge by probability two records with different forenames or birth dates (family "
        "members sharing an address and phone, twins, parent and child); such pairs go to review",
    )
    min_records_to_estimate: int = Field(
        200, ge=10, description="fewer CRM records: the model keeps its priors for u and the match share"
    )
    min_records_to_train: int = Field(
        1_000, ge=100, description="at least this many records: m is re-estimated by expectation maximisation"
    )
    exact_rule_recall: float = Field(
        0.8,
        gt=0,
        le=1,
        description="share of true duplicates the exact rules are assumed to find (match share)",
    )
    u_sample_pairs: int = Field(
        1_000_000, ge=10_000, description="random record pairs sampled to estimate u (agreement by chance)"
    )
    threads: int = Field(0, ge=0, description="DuckDB threads of the matcher; 0: one per CPU")
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> IdentityConfig:
        if self.review_threshold >= self.merge_threshold:
            raise ValueError("review_threshold must be below merge_threshold")
        return self


class Settings(_Model):
    home: Path = Field(Path(".seg"), description="warehouse, Dagster instance, MLflow store, reports")
    landing: Path | None = Field(None, description="folder of the extracts; default <home>/landing")
    as_of: dt.date | None = Field(None, description="scoring date; default: the run's date (UTC)")
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    customer_attributes: CustomerAttributes = Field(default_factory=CustomerAttributes)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("as_of", mode="before")
    @classmethod
    def _strict_date(cls, value: Any) -> Any:
        return _strict_date(value)

    @field_validator("sources", mode="before")
    @classmethod
    def _known_sources(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of source name -> {path, columns}")
        unknown = [k for k in value if k not in SOURCE_NAMES]
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; known sources: {', '.join(SOURCE_NAMES)}")
        return {k: ({} if v is None else v) for k, v in value.items()}

    @model_validator(mode="after")
    def _mappings_name_known_columns(self) -> Settings:
        for name, source in self.sources.items():
            known = set(CONTRACTS[name].column_names)
            if name == "crm_customers":
                known |= set(self.customer_attributes.names)
            for canonical in source.columns:
                if canonical not in known:
                    raise _KeyError(
                        f"sources.{name}.columns.{canonical}",
                        f"unknown canonical column {canonical!r} for {name}; known: {', '.join(sorted(known))}",
                    )
            theirs = list(source.columns.values())
            doubled = {c for c in theirs if theirs.count(c) > 1}
            if doubled:
                raise _KeyError(
                    f"sources.{name}.columns",
                    f"column {sorted(doubled)[0]!r} is mapped to more than one canonical column",
                )
        return self

    # --- derived locations -------------------------------------------------------------------------
    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def gx_root(self) -> Path:
        return self.home / "gx"

    @property
    def datadocs_dir(self) -> Path:
        return self.home / "datadocs"

    @property
    def expectations_dir(self) -> Path:
        return self.quality.expectations_dir or Path(__file__).resolve().parents[1] / "expectations"

    @property
    def crm_kept_columns(self) -> list[str]:
        """CRM columns the clean stage carries beyond the canonical ones: attributes and an explicit label."""
        kept = list(self.customer_attributes.names)
        if self.churn.label == "explicit" and self.churn.explicit_column not in kept:
            kept.append(self.churn.explicit_column)
        return kept

    @property
    def mlflow_tracking_uri(self) -> str:
        return self.mlflow.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def alerts_path(self) -> Path:
        return self.home / "alerts" / "run_failures.jsonl"

    @property
    def publish_dsn(self) -> str | None:
        """PostgreSQL DSN for publishing: env SEG_PUBLISH_DSN, else publish.postgres_dsn, else None."""
        dsn = os.environ.get("SEG_PUBLISH_DSN") or (
            self.publish.postgres_dsn.get_secret_value() if self.publish.postgres_dsn else None
        )
        return dsn or None

    @property
    def landing_dir(self) -> Path:
        return self.landing if self.landing is not None else self.home / "landing"

    def source(self, name: str) -> SourceConfig:
        return self.sources.get(name) or SourceConfig()

    def source_path(self, name: str) -> Path | None:
        """The configured path, else the first ``<landing>/<name>.<ext>`` that exists, else None."""
        configured = self.source(name).path
        if configured is not None:
            return configured
        for ext in SOURCE_EXTENSIONS:
            candidate = self.landing_dir / f"{name}{ext}"
            if candidate.exists():
                return candidate
        return None

    def check_source_path(self, name: str) -> None:
        """Fail with the config key (or the landing file) named when the extract is missing, is not a
        regular file (a FIFO, a device, a directory, a socket) or may not be read by this user."""
        configured = self.source(name).path
        try:
            path = self.source_path(name)
        except PermissionError:  # the landing folder may not be searched
            raise SegPipelineError(
                f"{name}: the landing folder {self.landing_dir} {unreadable_reason(self.landing_dir)}."
            ) from None
        problem = file_problem(path) if path is not None else None
        if problem == FILE_NOT_FOUND and configured is not None:
            raise SegPipelineError(
                f"config key sources.{name}.path: file not found: {configured}. "
                "Fix the path or remove the key to use the landing folder."
            )
        if problem:
            where = f"config key sources.{name}.path: {path}" if configured else f"{name}: file {path}"
            raise SegPipelineError(f"{where} {problem}.")

    def check_sources(self) -> None:
        """Fail with the config key named when an extract cannot be read (``check_source_path``) or the CRM
        extract is absent."""
        for name in SOURCE_NAMES:
            self.check_source_path(name)
        if self.source_path("crm_customers") is None:
            raise SegPipelineError(
                "config key sources.crm_customers.path: the CRM extract is required but none is configured "
                f"and no crm_customers.csv or .parquet is in the landing folder {self.landing_dir}. "
                "Set sources.crm_customers.path, or generate demo data with `seg-pipeline generate`."
            )


class _KeyError(ValueError):
    """Raised inside validators that know the exact dotted key at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


# --- loading ---------------------------------------------------------------------------------------

_PATH_KEYS = (("home",), ("landing",))


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so a bad date reaches validation with its key named."""


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _set_dotted(target: dict, dotted: str, value: Any) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise SegPipelineError(f"config override {dotted!r}: empty key")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict, overlay: Mapping) -> dict:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _absolutize(data: dict, base: Path) -> dict:
    """Make the path-valued keys of one layer absolute against ``base``."""

    def fix(value: Any) -> Any:
        if isinstance(value, str | Path) and str(value).strip():
            p = Path(str(value)).expanduser()
            return str(p if p.is_absolute() else (base / p).resolve())
        return value

    out = dict(data)
    for (key,) in _PATH_KEYS:
        if key in out:
            out[key] = fix(out[key])
    quality = out.get("quality")
    if isinstance(quality, Mapping) and "expectations_dir" in quality:
        out["quality"] = {**quality, "expectations_dir": fix(quality["expectations_dir"])}
    sources = out.get("sources")
    if isinstance(sources, Mapping):
        out["sources"] = {
            name: ({**src, "path": fix(src["path"])} if isinstance(src, Mapping) and "path" in src else src)
            for name, src in sources.items()
        }
    return out


def parse_scalar(text: str) -> Any:
    """Env and CLI values are YAML scalars, so numbers, booleans, null, lists and dicts work."""
    try:
        return _yaml(text) if text.strip() else None
    except yaml.YAMLError:
        return text


def env_overrides(environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
    """Dotted key -> (origin, value) for every ``SEG_*`` variable that names a config key.

    Single-word variables that are not config keys (SEG_PSEUDO_KEY, SEG_PUBLISH_DSN) are someone
    else's and are ignored; a nested one (``__``) with an unknown first key is a typo and is reported.
    """
    top = set(Settings.model_fields)
    found: dict[str, tuple[str, Any]] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        if parts[0] not in top and len(parts) == 1:
            continue
        found[".".join(parts)] = (f"env {var}", parse_scalar(raw))
    return found


# SEG_* variables that are not config keys: read by the CLI, the publish step and the tests
NON_CONFIG_ENV = (CONFIG_ENV, "SEG_PUBLISH_DSN", "SEG_PSEUDO_KEY", "SEG_TEST_PG_URL")


def unknown_env_vars(environ: Mapping[str, str], settings: Settings) -> list[str]:
    """One warning per single-word ``SEG_*`` variable that nothing reads (``SEG_ASOF`` for ``SEG_AS_OF``),
    naming the closest known one: such a typo would otherwise be ignored without a word."""
    import difflib

    config = {ENV_PREFIX + key.upper(): key for key in Settings.model_fields}
    known = {*config, *NON_CONFIG_ENV, settings.privacy.pseudonymization_key_env}
    warnings = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or "__" in var or var in known:
            continue  # nested names with an unknown first key fail validation instead
        warning = f"environment variable {var} is not a seg-pipeline setting and is ignored"
        # compared without the prefix every candidate shares
        names = {name.removeprefix(ENV_PREFIX): name for name in sorted(known)}
        for close in difflib.get_close_matches(var.removeprefix(ENV_PREFIX), names, n=1, cutoff=0.6):
            key = f" (config key {config[names[close]]})" if names[close] in config else ""
            warning += f"; did you mean {names[close]}{key}?"
        warnings.append(warning)
    return warnings


def parse_cli_overrides(items: Iterable[str]) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise SegPipelineError(f"--set {item!r}: expected KEY=VALUE, e.g. --set segmentation.k_max=8")
        key, _, value = item.partition("=")
        found[key.strip()] = (f"--set {key.strip()}", parse_scalar(value))
    return found


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    check_files: bool = False,
) -> Settings:
    """Resolve the settings from all layers; raise SegPipelineError naming the offending key.

    ``overrides`` is either ``KEY=VALUE`` strings (as from ``--set``) or a mapping of dotted key -> value.
    """
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(CONFIG_ENV) or None
    origins: dict[str, str] = {}
    data: dict[str, Any] = {}

    if config_file is not None:
        path = Path(config_file).expanduser().resolve()
        if not path.is_file():
            raise SegPipelineError(f"config file not found: {path}")
        try:
            loaded = _yaml(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SegPipelineError(redact(f"config file {path} is not valid YAML: {exc}")) from None
        if not isinstance(loaded, dict):
            raise SegPipelineError(
                redact(f"config file {path}: top level must be a mapping of keys, got {loaded!r}")
            )
        data = _absolutize(loaded, path.parent)
        for key in loaded:
            origins[str(key)] = f"file {path}"

    layered = env_overrides(environ)
    if isinstance(overrides, Mapping):
        layered.update({k: ("override", v) for k, v in overrides.items()})
    else:
        layered.update(parse_cli_overrides(overrides))
    for key, (origin, value) in layered.items():
        layer: dict[str, Any] = {}
        _set_dotted(layer, key, value)
        data = _deep_merge(data, _absolutize(layer, Path.cwd()))
        origins[key] = origin

    data.setdefault("home", str(Path(".seg").resolve()))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SegPipelineError(_explain(exc, origins)) from None
    if check_files:
        settings.check_sources()
    return settings


def _explain(exc: ValidationError, origins: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        ctx_error = (err.get("ctx") or {}).get("error")
        key = ctx_error.key if isinstance(ctx_error, _KeyError) else ".".join(loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            message = f"unknown key; allowed here: {', '.join(allowed)}" if allowed else "unknown key"
        elif ctx_error is not None:
            message = str(ctx_error)
        elif err["type"].startswith("date"):
            message = f"invalid date {err.get('input')!r}, expected YYYY-MM-DD"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        origin = next((origins[p] for p in _prefixes(key) if p in origins), None) or next(
            (o for k, o in origins.items() if k.startswith(f"{key}.")), None
        )
        where = f" (from {origin})" if origin else ""
        lines.append(f"config key {key or '<root>'}{where}: {message}")
    return redact("invalid configuration:\n  " + "\n  ".join(lines))


def _prefixes(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]


def _allowed_keys(loc: list[str]) -> list[str]:
    """The keys a model accepts at ``loc``, to list next to an unknown key."""
    model: type[BaseModel] | None = Settings
    i = 0
    while i < len(loc):
        part = loc[i]
        if model is None or part not in model.model_fields:
            return []
        if model is Settings and part == "sources":
            model, i = SourceConfig, i + 2  # skip the source name
            continue
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        i += 1
    return list(model.model_fields) if model is not None else []

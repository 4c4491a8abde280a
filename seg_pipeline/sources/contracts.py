"""Canonical schemas of the source extracts: the contract every raw table is coerced to.

Five describe customers and what they do (the CRM, orders, web, support, email); the sixth, interventions,
is the company's own record of retention contacts (who was contacted when, by which campaign), which the
outcome stage needs to tell the contacted from the assigned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "datetime", "float", "bool"]

# pandas dtypes used for each canonical type; nullable so an empty value stays missing, never 0/False.
PANDAS_DTYPES: dict[ColumnType, str] = {
    "string": "string",
    "datetime": "datetime64[ns]",
    "float": "float64",
    "bool": "boolean",
}

SOURCE_ROW = "source_row"
"""Column added to every raw table: 1-based data row of the source file (row 1 = first row after the header)."""
PARSE_ERRORS = "parse_errors"
"""Column added to every raw table: why a required value of the row did not parse (else missing)."""

# Every column the readers and cleaners add next to the extract's own: a user column (a listed attribute,
# an explicit churn label) of the same name would be overwritten or shadowed by it without a word, so
# such names are refused (config.py at load, readers.py at read time). Name -> what it is.
RESERVED_COLUMNS: dict[str, str] = {
    SOURCE_ROW: "the reader's row number in the file",
    PARSE_ERRORS: "the reader's record of unparseable required values",
    "email_norm": "the clean stage's normalized email",
    "phone_e164": "the clean stage's E.164 phone",
    "phone_match": "the clean stage's phone matching key",
    "phone_status": "the clean stage's phone validity (valid, invalid, missing)",
    "match_probability": "the clean stage's probability of a probabilistic merge",
    "name_norm": "the clean stage's normalized contact name",
    "company_stem": "the clean stage's company matching key",
    "legal_form": "the clean stage's legal form of the company",
    "cluster": "the clean stage's identity cluster",
    "is_survivor": "the clean stage's surviving record flag",
    "match_rule": "the clean stage's dedup rule",
    "member_key": "the clean stage's key of a merged record",
    "customer_key": "the pseudonymous customer key",
    "profiling_allowed": "the clean stage's consent flag",
    "is_stale": "the clean stage's stale-record flag",
    "merged_records": "the clean stage's count of merged records",
    "linked_by": "the clean stage's event linking rule",
    "amount_original": "the clean stage's uncapped order amount",
    "amount_capped": "the clean stage's outlier flag",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class SourceContract:
    name: str
    columns: tuple[Column, ...]
    # Each group needs at least one of its columns present in the file (e.g. customer_id or email).
    required_any: tuple[tuple[str, ...], ...] = ()
    # crm_customers is the only source that must exist; the others yield an empty typed table when absent.
    required_source: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


CRM_CUSTOMERS = SourceContract(
    name="crm_customers",
    required_source=True,
    columns=(
        Column("customer_id", "string", required=True, description="the CRM's own customer id"),
        Column("company", "string", description="company name incl. legal form"),
        Column("name", "string", description="contact person (PII)"),
        Column("email", "string", description="contact email (PII)"),
        Column("phone", "string", description="contact phone (PII)"),
        Column("country", "string", description="ISO 3166 code; also the region phone numbers are read in"),
        Column("address", "string", description="street address, used for matching only (PII)"),
        Column("postal_code", "string", description="used for matching only (PII)"),
        Column("city", "string", description="used for matching only (PII)"),
        Column("birth_date", "datetime", description="contact's birth date, used for matching only (PII)"),
        Column("industry", "string"),
        Column("company_size", "string", description="size band, e.g. 11-50"),
        Column("signup_date", "datetime"),
        Column("updated_at", "datetime", description="last change of the CRM record"),
        Column("plan", "string"),
        Column("consent_marketing", "bool"),
        Column("consent_profiling", "bool"),
        Column("churned", "bool", description="explicit churn label; empty = unknown"),
        Column("churn_date", "datetime"),
    ),
)

ORDERS = SourceContract(
    name="orders",
    columns=(
        Column("customer_id", "string", required=True),
        Column("order_date", "datetime", required=True),
        Column("amount", "float", required=True, description="order value; negative = refund"),
        Column("order_id", "string"),
        Column("channel", "string", description="web, app, store, phone, sales_rep"),
        Column("product_category", "string"),
    ),
)

WEB_EVENTS = SourceContract(
    name="web_events",
    required_any=(("customer_id", "email", "anonymous_id"),),
    columns=(
        Column("ts", "datetime", required=True),
        Column("customer_id", "string"),
        Column("email", "string", description="set on identify events (PII)"),
        Column("anonymous_id", "string", description="cookie id of a visitor not yet identified"),
        Column("event_type", "string", description="page_view or identify"),
        Column("page", "string"),
        Column("session_id", "string"),
    ),
)

SUPPORT_TICKETS = SourceContract(
    name="support_tickets",
    required_any=(("customer_id", "email", "phone"),),
    columns=(
        Column("created_at", "datetime", required=True),
        Column("customer_id", "string"),
        Column("email", "string", description="caller email when the ticket is not linked (PII)"),
        Column("phone", "string", description="caller phone when the ticket is not linked (PII)"),
        Column("ticket_id", "string"),
        Column("topic", "string"),
        Column("channel", "string"),
        Column("resolved_at", "datetime"),
        Column("satisfaction", "float", description="1-5"),
    ),
)

EMAIL_EVENTS = SourceContract(
    name="email_events",
    required_any=(("customer_id", "email"),),
    columns=(
        Column("ts", "datetime", required=True),
        Column("event_type", "string", required=True, description="sent, open, click or unsubscribe"),
        Column("customer_id", "string"),
        Column("email", "string", description="recipient when not linked (PII)"),
        Column("campaign_id", "string"),
    ),
)

INTERVENTIONS = SourceContract(
    name="interventions",
    columns=(
        Column("customer_id", "string", required=True, description="the CRM id of the contacted customer"),
        Column("date", "datetime", required=True, description="when the customer was contacted"),
        Column("campaign", "string", description="the campaign or programme the contact belonged to"),
        Column("channel", "string", description="phone, email, letter, ..."),
    ),
)

CONTRACTS: dict[str, SourceContract] = {
    c.name: c for c in (CRM_CUSTOMERS, ORDERS, WEB_EVENTS, SUPPORT_TICKETS, EMAIL_EVENTS, INTERVENTIONS)
}
SOURCE_NAMES: tuple[str, ...] = tuple(CONTRACTS)

"""The one list of column names the pipeline adds (sources/contracts.py RESERVED_COLUMNS) is complete:
every column the readers and cleaners add next to an extract's own is on it, so a user column of that
name (a listed attribute) is refused instead of being silently replaced."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from seg_pipeline.cleaning import events as ev
from seg_pipeline.cleaning.customers import clean_customers, normalized, resolve_identities
from seg_pipeline.sources.contracts import CONTRACTS, RESERVED_COLUMNS
from seg_pipeline.sources.readers import read_source

KEY = b"k"
AS_OF = dt.date(2024, 6, 30)
EXTRACTS = {
    "crm_customers": "customer_id,company,name,email,phone,country,signup_date,updated_at,consent_profiling\n"
    "A1,Acme S.L.,Ana Lopez,ana@x.es,+34 612 345 678,ES,2022-01-10,2023-01-01,yes\n"
    "A2,ACME SL,Ana Lopez,ana@x.es,,ES,2023-01-10,2024-01-01,no\n",
    "orders": "order_id,customer_id,order_date,amount,channel\nO1,A1,2024-06-01,10,web\nO2,A2,2024-06-02,900,web\n",
    "web_events": "ts,customer_id,email,anonymous_id,event_type\n2024-06-01,A1,,c1,page_view\n"
    "2024-06-02,,ana@x.es,c1,identify\n",
    "support_tickets": "created_at,customer_id,phone,ticket_id,satisfaction\n2024-06-01,,612345678,T1,4\n",
    "email_events": "ts,event_type,customer_id,email\n2024-06-01,OPEN,,ana@x.es\n",
}
CLEANERS = {
    "orders": ev.clean_orders,
    "web_events": ev.clean_web_events,
    "support_tickets": ev.clean_support_tickets,
    "email_events": ev.clean_email_events,
}


def raw(source: str, tmp_path) -> pd.DataFrame:
    path = tmp_path / f"{source}.csv"
    path.write_text(EXTRACTS[source], encoding="utf-8")
    return read_source(CONTRACTS[source], path)[0]


def added(frame: pd.DataFrame, source: str) -> set[str]:
    return set(frame.columns) - set(CONTRACTS[source].column_names)


def test_every_column_the_readers_and_cleaners_add_is_reserved(tmp_path):
    crm = raw("crm_customers", tmp_path)
    resolved, _ = resolve_identities(normalized(crm))
    result = clean_customers(crm, key=KEY, as_of=AS_OF, erased=set(), default_consent=True,
                             stale_record_days=730, attributes=[], run_id="r")  # fmt: skip
    new = (
        added(crm, "crm_customers")
        | added(resolved, "crm_customers")
        | added(result.customers, "crm_customers")
    )
    identity = ev.Identity(result.id_map, result.contacts, result.erased, KEY)
    for source, clean in CLEANERS.items():
        events = raw(source, tmp_path)
        new |= added(events, source)
        new |= added(clean(events, identity, as_of=AS_OF, retention_days=3650, run_id="r").table, source)
    # the list holds exactly those (member_key: clean_customers sets it on the records, attributes
    # included, while merging them, and returns none of it), nothing refused without a reason
    unseen = set(RESERVED_COLUMNS) - new
    assert new <= set(RESERVED_COLUMNS) and unseen == {"member_key"}, (
        sorted(new - set(RESERVED_COLUMNS)),
        unseen,
    )
    # none of them is a canonical column of any extract (those are the user's)
    assert not set(RESERVED_COLUMNS) & {c for contract in CONTRACTS.values() for c in contract.column_names}

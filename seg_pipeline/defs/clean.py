"""Stage 3, clean: thin wrappers over cleaning/ (dedup, re-keying, quarantine, privacy).

From here on customers are keyed by customer_key; name, email and phone stop at clean_customers.
"""

import dagster as dg
import pandas as pd

from seg_pipeline.cleaning import events as ev
from seg_pipeline.cleaning.customers import clean_customers as clean_customer_records
from seg_pipeline.cleaning.privacy import erasure_keys, resolve_key
from seg_pipeline.cleaning.quarantine import QUARANTINE_COLUMNS
from seg_pipeline.defs.common import current_run_id
from seg_pipeline.platform.rescore import CRM, FINGERPRINT_KEY, PARTS_KEY, ingestion_fingerprint
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.warehouse import ExtractRecord, Warehouse

CLEAN = {"group_name": "clean", "kinds": {"pandas", "duckdb"}, "metadata": {"schema": "clean"}}


def _out(description: str) -> dg.AssetOut:
    return dg.AssetOut(is_required=True, description=description, **CLEAN)


def accounting_metadata(accounting: dict[str, int], fixes: dict[str, int]) -> dict:
    """Row accounting in metadata; it must balance: rows in = clean + quarantined + merged + dropped."""
    accounted = sum(v for k, v in accounting.items() if k.startswith("rows_") and k not in ("rows_in",)
                    and not k.startswith("rows_clean_"))  # fmt: skip
    if accounted != accounting["rows_in"]:
        raise RuntimeError(f"row accounting does not balance: {accounting}")  # a bug, not bad data
    lines = [f"| {k} | {v:,} |" for k, v in accounting.items()]
    lines += [f"| fixed: {k} | {v:,} |" for k, v in fixes.items()]
    return {
        **{f"accounting/{k}": v for k, v in accounting.items()},
        **{f"fixed/{k}": v for k, v in fixes.items()},
        "row_accounting": dg.MetadataValue.md("| count | rows |\n|---|---:|\n" + "\n".join(lines)),
    }


def outside_window_metadata(counts: dict[str, int]) -> dict:
    """Rows (or dates) after as_of that this run left out or kept aside: a backfill's window, not errors."""
    return {f"outside_window/{k}": v for k, v in counts.items()}


def extract_read(warehouse: Warehouse, source: str) -> ExtractRecord:
    """What the raw step of ``source`` read, as it recorded it in the warehouse."""
    record = warehouse.extract(source)
    if record is None:  # the raw step always records it before its table exists
        raise dg.Failure(f"raw_{source} recorded no extract in the warehouse: materialize raw_{source} first",
                         allow_retries=False)  # fmt: skip
    return record


def fingerprint_metadata(context, warehouse: Warehouse, cfg, source: str, as_of, key: bytes,
                         extract: ExtractRecord) -> dict:  # fmt: skip
    """What this ingestion of ``source`` depended on (platform/rescore.py), recorded for a later rescore to
    compare with, and shown in the UI."""
    crm = None
    if source != CRM:  # events are re-keyed through the CRM ingestion of this run (or the one reused)
        crm = warehouse.ingestion_fingerprint(CRM)
    fingerprint, parts = ingestion_fingerprint(cfg, source, as_of, extract.file_sha256, crm, key)
    warehouse.record_ingestion(source, current_run_id(context), fingerprint, parts)
    return {FINGERPRINT_KEY: fingerprint, PARTS_KEY: dg.MetadataValue.json(parts)}


@dg.multi_asset(
    outs={
        "clean_customers": _out("One row per real customer after dedup; keyed by customer_key; no PII."),
        "customer_id_map": _out(
            "Every CRM customer_id -> surviving customer_id and customer_key, with the match rule."
        ),
        "contact_index": _out("Pseudonymous email/phone hash -> customer_key, to link unlinked events."),
        "erasure_index": _out(
            "Hashes of ids, emails and phones of erased customers; their events are dropped."
        ),
        "quarantine_crm_customers": _out("CRM rows that failed a row-level rule."),
        "identity_review": _out(
            "Record pairs the matcher found likely but not certain (review_threshold <= p < merge_threshold): "
            "not merged; CRM ids, customer keys, probability and which fields agreed, never their values."
        ),
    },
)
def clean_customers(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    warehouse: dg.ResourceParam[Warehouse],
    raw_crm_customers: pd.DataFrame,
):
    cfg = settings.resolved
    key = resolve_key(cfg.privacy.pseudonymization_key_env, cfg.home)
    as_of = settings.as_of
    extract = extract_read(warehouse, CRM)
    result = clean_customer_records(
        raw_crm_customers,
        key=key,
        as_of=as_of,
        erased=erasure_keys(cfg.home),
        default_consent=cfg.privacy.default_consent,
        stale_record_days=cfg.quality.stale_record_days,
        attributes=cfg.crm_kept_columns,
        run_id=current_run_id(context),
        identity=cfg.identity,
        export_end=extract.export_end,
    )
    customers = result.customers
    excluded = int((~customers["profiling_allowed"]).sum())
    rules = result.id_map["match_rule"].value_counts().to_dict()
    yield dg.Output(
        customers,
        output_name="clean_customers",
        metadata={
            "dagster/row_count": len(customers),
            **accounting_metadata(result.accounting, result.fixes),
            **outside_window_metadata(result.outside_window),
            "customers_without_profiling_consent": excluded,
            "stale_records": int(customers["is_stale"].sum()),
            "survivorship_rule": "earliest signup survives, then latest update, then smallest id; gaps filled newest first",
            **fingerprint_metadata(context, warehouse, cfg, CRM, as_of, key, extract),
        },
    )
    yield dg.Output(
        result.id_map, output_name="customer_id_map",
        metadata={
            "dagster/row_count": len(result.id_map),
            "match_rules": dg.MetadataValue.json(rules),
            "identity_model": result.identity["model"],
            "identity_weights": dg.MetadataValue.json(result.identity["weights"]),
        },
    )  # fmt: skip
    yield dg.Output(
        result.contacts, output_name="contact_index", metadata={"dagster/row_count": len(result.contacts)}
    )
    yield dg.Output(
        result.erased, output_name="erasure_index", metadata={"dagster/row_count": len(result.erased)}
    )
    yield dg.Output(
        result.quarantine,
        output_name="quarantine_crm_customers",
        metadata={"dagster/row_count": len(result.quarantine)},
    )
    yield dg.Output(result.review, output_name="identity_review", metadata=review_metadata(result))


def review_metadata(result) -> dict:
    """The review table's count, thresholds and first pairs (ids and field names only) for the UI."""
    review, identity = result.review, result.identity
    lines = [
        f"| {r.customer_id_a} | {r.customer_id_b} | {r.match_probability:.3f} | {r.fields_agreed} | "
        f"{r.fields_similar} | {r.fields_disagreed} |"
        for r in review.head(10).itertuples()
    ]
    table = "| CRM id | CRM id | probability | agreed | similar | disagreed |\n|---|---|---:|---|---|---|\n"
    return {
        "dagster/row_count": len(review),
        "pairs_for_review": len(review),
        "merged_by_rule": dg.MetadataValue.json(identity["merged_by_rule"]),
        "merge_threshold": identity["merge_threshold"],
        "review_threshold": identity["review_threshold"],
        "identity_model": identity["model"],
        "examples": dg.MetadataValue.md(table + "\n".join(lines) if lines else "no pair to review"),
    }


def _event_stage(source: str, clean_fn) -> dg.AssetsDefinition:
    raw_name = f"raw_{source}"

    @dg.multi_asset(
        name=f"clean_{source}_stage",
        outs={
            f"clean_{source}": _out(f"{source} re-keyed to customer_key, rule-checked, without PII."),
            f"quarantine_{source}": _out(f"{source} rows that failed a row-level rule."),
        },
        ins={
            "raw": dg.AssetIn(raw_name),
            "id_map": dg.AssetIn("customer_id_map"),
            "contacts": dg.AssetIn("contact_index"),
            "erased": dg.AssetIn("erasure_index"),
        },
    )
    def stage(context: dg.AssetExecutionContext, settings: PipelineSettings, warehouse: dg.ResourceParam[Warehouse],
              raw, id_map, contacts, erased):  # fmt: skip
        cfg = settings.resolved
        key = resolve_key(cfg.privacy.pseudonymization_key_env, cfg.home)
        as_of = settings.as_of
        identity = ev.Identity(id_map, contacts, erased, key)
        extract = extract_read(warehouse, source)
        result = clean_fn(
            raw,
            identity,
            as_of=as_of,
            retention_days=cfg.privacy.retention_days,
            run_id=current_run_id(context),
            export_end=extract.export_end,
        )
        metadata = {
            "dagster/row_count": len(result.table),
            **accounting_metadata(result.accounting, result.fixes),
            **outside_window_metadata(result.outside_window),
            **fingerprint_metadata(context, warehouse, cfg, source, as_of, key, extract),
        }
        if source == "orders":
            metadata["outlier_rule"] = ev.OUTLIER_RULE
            context.log.info(f"capped {result.fixes['amount_capped']} order amount(s): {ev.OUTLIER_RULE}")
        for rule, count in result.quarantine["rule"].value_counts().items():
            context.log.info(f"{source}: {count} row(s) quarantined by rule {rule}")
        quarantined = result.quarantine["rule"].value_counts().to_dict()
        metadata["quarantined_by_rule"] = dg.MetadataValue.json(quarantined)
        yield dg.Output(result.table, output_name=f"clean_{source}", metadata=metadata)
        yield dg.Output(
            result.quarantine,
            output_name=f"quarantine_{source}",
            metadata={"dagster/row_count": len(result.quarantine)},
        )

    return stage


event_stages = [
    _event_stage("orders", ev.clean_orders),
    _event_stage("web_events", ev.clean_web_events),
    _event_stage("support_tickets", ev.clean_support_tickets),
    _event_stage("email_events", ev.clean_email_events),
    _event_stage("interventions", ev.clean_interventions),
]
SOURCES = ("crm_customers", "orders", "web_events", "support_tickets", "email_events", "interventions")


@dg.asset(
    ins={f"quarantine_{s}": dg.AssetIn(f"quarantine_{s}") for s in SOURCES},
    description="Every row any source lost to a row-level rule this run: source, row, record key, rule, reason.",
    **CLEAN,
)
def quarantine(**parts: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    frame = pd.concat([p[list(QUARANTINE_COLUMNS)] for p in parts.values()], ignore_index=True)
    counts = frame.groupby(["source", "rule"]).size().reset_index(name="rows")
    table = "| source | rule | rows |\n|---|---|---:|\n" + "\n".join(
        f"| {r.source} | {r.rule} | {r.rows:,} |" for r in counts.itertuples()
    )
    return dg.Output(
        frame, metadata={"dagster/row_count": len(frame), "by_source_and_rule": dg.MetadataValue.md(table)}
    )


clean_assets = [clean_customers, *event_stages, quarantine]


def definitions(settings) -> dg.Definitions:
    return dg.Definitions(assets=clean_assets)

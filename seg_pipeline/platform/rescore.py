"""Which sources a rescore can take as they are: the validated clean tables of an earlier successful run
whose inputs were the same.

A source's ingestion (raw_<source>, its GX gate, its clean stage and that stage's gates) is a function of
the extract's bytes, how the source is read, the quality and privacy settings, as_of, the pseudonymization
key, the erasure requests, the pipeline's code and GX suites, the versions of the libraries that parse and
validate, and for event sources the CRM's ingestion (events are re-keyed through it). The clean stage
records a digest of all of them as ``ingestion_fingerprint``; `seg-pipeline run --job rescore` ingests a
source again only when today's digest differs or its last ingestion was not part of a successful run.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from seg_pipeline.config import Settings
from seg_pipeline.sources.contracts import SOURCE_NAMES

FINGERPRINT_KEY = "ingestion_fingerprint"
PARTS_KEY = "ingestion_inputs"
REUSED_TAG = "seg_pipeline/reused_ingestion"
CRM = "crm_customers"
LIBRARIES = (
    "pandas", "numpy", "pyarrow", "duckdb", "great-expectations", "phonenumbers", "cleanco", "anyascii", "splink",
)  # fmt: skip


def stage_assets(source: str) -> tuple[str, ...]:
    """The assets one source's ingestion materializes (left out of a rescore together)."""
    if source == CRM:
        return ("raw_crm_customers", "clean_customers", "customer_id_map", "contact_index", "erasure_index",
                "quarantine_crm_customers", "identity_review")  # fmt: skip
    return (f"raw_{source}", f"clean_{source}", f"quarantine_{source}")


def fingerprinted_asset(source: str) -> str:
    """The clean table whose materialization carries the source's ingestion fingerprint."""
    return "clean_customers" if source == CRM else f"clean_{source}"


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


@functools.cache
def code_digest(expectations_dir: Path) -> str:
    """The pipeline's Python files, the GX suites and the parsing/validation libraries' versions."""
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *expectations_dir.glob("*.json")]):
        digest.update(str(path.name).encode() + b"\0" + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        digest.update(f"{library}={metadata.version(library)}".encode())
    return digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "none"


def ingestion_fingerprint(
    cfg: Settings, source: str, as_of: dt.date, file_sha256: str, crm_fingerprint: str | None, key: bytes
) -> tuple[str, dict[str, str]]:
    """The digest of everything the source's clean tables depend on, and its parts (short digests, named so
    a rescore can say what changed). ``key`` enters only as an HMAC of a constant."""
    from seg_pipeline.cleaning.privacy import erasure_file
    from seg_pipeline.sources.configured import extra_columns
    from seg_pipeline.sources.window import exported_on

    parts = {
        "extract": (file_sha256 or "absent")[:16],
        "reading": _digest([cfg.source(source).model_dump(mode="json"), extra_columns(source, cfg)]),
        "settings": _digest(
            [cfg.quality.model_dump(mode="json"), cfg.privacy.model_dump(mode="json"), cfg.crm_kept_columns]
            + ([cfg.identity.model_dump(mode="json")] if source == CRM else [])
        ),
        "as_of": as_of.isoformat(),
        # with as_of it sets which rows are outside the run's window (sources/window.py)
        "exported_on": str(exported_on(cfg, source)),
        "key": hmac.new(key, b"seg-pipeline ingestion fingerprint", hashlib.sha256).hexdigest()[:16],
        "erasure_requests": _file_digest(erasure_file(cfg.home)),
        "code": code_digest(cfg.expectations_dir),
    }
    if source != CRM:
        parts["crm_ingestion"] = crm_fingerprint or "none"
    return _digest(parts), parts


@dataclass
class RescorePlan:
    """Per source: reused (the run whose ingestion is taken) or ingested again (why)."""

    as_of: dt.date
    reused: dict[str, str] = field(default_factory=dict)
    ingest: dict[str, str] = field(default_factory=dict)

    def left_out(self) -> set[str]:
        """Asset names the rescore run does not materialize."""
        names = {name for source in self.reused for name in stage_assets(source)}
        if not self.ingest:
            names.add("quarantine")  # every part unchanged: so is their union
        return names


def _changed(old: dict, new: dict) -> str:
    names = [k.replace("_", " ") for k in new if old.get(k) != new[k]]
    return ", ".join(names) or "fingerprint"


def plan_rescore(cfg: Settings, instance, existing_tables: set[str]) -> RescorePlan:
    """Decide per source whether its last ingestion can be reused; ``existing_tables`` are the warehouse's
    "schema.table" names (a reused table must still be there)."""
    import dagster as dg

    from seg_pipeline.cleaning.privacy import resolve_key
    from seg_pipeline.sources.landing import extract_set

    as_of = cfg.as_of or dt.datetime.now(dt.UTC).date()
    key = resolve_key(cfg.privacy.pseudonymization_key_env, cfg.home)
    files = extract_set(cfg)  # the files a run would read now, hashed as the raw assets hash them
    plan = RescorePlan(as_of)
    crm_fingerprint = None
    for source in SOURCE_NAMES:  # the CRM first: event fingerprints include its
        sha = files[source].sha256 if source in files else ""
        fingerprint, parts = ingestion_fingerprint(cfg, source, as_of, sha, crm_fingerprint, key)
        if source == CRM:
            crm_fingerprint = fingerprint
        event = instance.get_latest_materialization_event(dg.AssetKey(fingerprinted_asset(source)))
        recorded = event.asset_materialization.metadata if event and event.asset_materialization else {}
        record = instance.get_run_record_by_id(event.run_id) if event else None
        missing = [n for n in stage_assets(source)
                   if f"{'raw' if n.startswith('raw_') else 'clean'}.{n}" not in existing_tables]  # fmt: skip
        if event is None:
            plan.ingest[source] = "never ingested on this instance"
        elif FINGERPRINT_KEY not in recorded:
            plan.ingest[source] = "its last ingestion recorded no fingerprint"
        elif recorded[FINGERPRINT_KEY].value != fingerprint:
            old = recorded[PARTS_KEY].value if PARTS_KEY in recorded else {}
            plan.ingest[source] = f"changed since run {event.run_id[:8]}: {_changed(old, parts)}"
        elif record is None or record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            plan.ingest[source] = (
                f"its last ingestion (run {event.run_id[:8]}) was in a run that did not succeed"
            )
        elif missing:
            plan.ingest[source] = f"warehouse table(s) missing: {', '.join(missing)}"
        else:
            plan.reused[source] = event.run_id
    return plan

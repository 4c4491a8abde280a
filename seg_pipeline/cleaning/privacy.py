"""Pseudonymization (keyed HMAC-SHA256), the erasure-request register and consent rules."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from seg_pipeline.errors import SegPipelineError

KEY_FILE = Path("secrets") / "pseudonymization.key"
ERASURE_FILE = Path("privacy") / "erasure_requests.csv"


def key_file(home: Path) -> Path:
    return home / KEY_FILE


def resolve_key(env_var: str, home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key: from the env var the config names, else the demo key file under home."""
    environ = os.environ if environ is None else environ
    value = environ.get(env_var)
    if value:
        return value.encode("utf-8")
    path = key_file(home)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip().encode("utf-8")
    raise SegPipelineError(
        f"no pseudonymization key: set the env var {env_var} (config key privacy.pseudonymization_key_env) "
        f"to a long random secret, or run `seg-pipeline run` once to create a demo key at {path}."
    )


def ensure_demo_key(env_var: str, home: Path) -> Path | None:
    """Create a random key file under home when none is configured; return its path if one was created."""
    path = key_file(home)
    if os.environ.get(env_var) or path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def pseudonymize(values: pd.Series, key: bytes) -> pd.Series:
    """Keyed HMAC-SHA256 (hex) of each value; missing stays missing. Hashes each distinct value once and
    spreads the digests by factorized code (``Series.map`` with a dict is several times slower on strings)."""
    codes, uniques = pd.factorize(values.astype("string"))
    digests = [hmac.new(key, str(v).encode("utf-8"), hashlib.sha256).hexdigest() for v in uniques]
    table = np.array([*digests, None], dtype=object)  # code -1 (missing) takes the trailing None
    return pd.Series(table[codes], index=values.index, dtype="string")


def suppression_hash(values: pd.Series, kind: str, key: bytes) -> pd.Series:
    """Hash for the erasure index, domain-separated so it never equals a customer_key or contact hash."""
    return pseudonymize(f"erased|{kind}|" + values.astype("string"), key)


# --- erasure requests -------------------------------------------------------------------------------


def erasure_file(home: Path) -> Path:
    return home / ERASURE_FILE


def record_erasure(home: Path, customer_id: str, key: bytes, now: dt.datetime | None = None) -> bool:
    """Append a request (stored as the customer's pseudonymous key, never the id). False if already recorded."""
    customer_id = customer_id.strip()
    if not customer_id:
        raise SegPipelineError("forget: the customer id is empty")
    customer_key = pseudonymize(pd.Series([customer_id]), key).iloc[0]
    if customer_key in erasure_keys(home):
        return False
    path = erasure_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["customer_key", "requested_at"])
        writer.writerow([customer_key, (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")])
    return True


def erasure_keys(home: Path) -> set[str]:
    path = erasure_file(home)
    if not path.exists():
        return set()
    with path.open(encoding="utf-8", newline="") as fh:
        return {row["customer_key"] for row in csv.DictReader(fh) if row.get("customer_key")}


def profiling_allowed(consent_profiling: pd.Series, default_consent: bool) -> pd.Series:
    """Explicit consent decides; where the CRM says nothing, the configured default applies."""
    return consent_profiling.astype("boolean").fillna(default_consent).astype(bool)

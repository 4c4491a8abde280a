"""Keep secrets out of what people read: error messages, logs, metadata, CLI output and alerts.

``redact(text)`` masks the password of every URL or DSN in ``text`` (``postgresql://user:***@host/db``,
``password=***``) and every known secret value held in the environment (the pseudonymization key, the
publish DSN's password, ``PGPASSWORD``, ...) with ``***``. Secrets themselves come from environment
variables only; the config rejects URLs that carry a password (config.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

MASK = "***"

# scheme://user:password@ ; the password runs to the last "@" of the token (an unescaped "@" in it is common)
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s'\"<>]*:)(?P<secret>[^\s'\"<>]*)@")
# libpq key/value (password=..., quoted or not), URL query (?password=...), JSON/YAML ("password": "...")
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^\s&;,'\"]+)",
    re.IGNORECASE,
)
_KEY_COLON = re.compile(r"(?P<head>[\"']?\b(?:password|passwd|pwd)[\"']?\s*:\s*)(?P<secret>\"[^\"]*\"|'[^']*')",
                        re.IGNORECASE)  # fmt: skip

# environment variables whose whole value is a secret, besides the ones named by suffix
SECRET_ENV_VARS = ("SEG_PSEUDO_KEY", "PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
SECRET_ENV_SUFFIXES = ("_KEY", "_PASSWORD", "_SECRET", "_TOKEN")
# environment variables that hold a URL or DSN whose password is a secret
DSN_ENV_VARS = ("SEG_PUBLISH_DSN", "DAGSTER_PG_URL", "MLFLOW_TRACKING_URI", "SEG_TEST_PG_URL")
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words


def redact_dsn(text: str) -> str:
    """``text`` with the password of every URL userinfo and every ``password=`` pair replaced by ``***``."""
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)
    return _KEY_COLON.sub(lambda m: f'{m["head"]}"{MASK}"', text)


def has_password(dsn: str) -> bool:
    """True when the URL or libpq DSN carries a password (one that is not already masked)."""
    return redact_dsn(dsn) != dsn


def dsn_passwords(dsn: str) -> list[str]:
    """The passwords written in a URL or DSN (as written and URL-decoded)."""
    found = [m["secret"] for m in _URL_USERINFO.finditer(dsn)]
    found += [m["secret"].strip("'\"") for m in _KEY_VALUE.finditer(dsn)]
    return [v for s in found for v in dict.fromkeys((s, unquote(s))) if v]


def known_secrets(environ: Mapping[str, str] | None = None, extra_env: Iterable[str] = ()) -> list[str]:
    """Secret values in the environment: whole values of secret-looking variables (and ``extra_env``, e.g.
    the configured pseudonymization key variable) and the passwords inside DSN variables."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for name, value in environ.items():
        if name in SECRET_ENV_VARS or name in extra_env or name.upper().endswith(SECRET_ENV_SUFFIXES):
            values.append(value)
        if name in DSN_ENV_VARS:
            values += dsn_passwords(value)
    # longest first, so a secret that contains another is masked whole
    return sorted({v for v in values if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each value in ``secrets`` replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """Passwords of URLs/DSNs and known secret values (default: from the environment) masked."""
    text = redact_dsn(str(text))
    return redact_secrets(text, known_secrets() if secrets is None else secrets)

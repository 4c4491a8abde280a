"""redact.py: passwords of URLs and DSNs and known secret values are masked wherever text is shown."""

from __future__ import annotations

import io

import psycopg
import pytest

from seg_pipeline.cli.output import report_error
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.publish.stores import PublishUnavailable, open_postgres
from seg_pipeline.redact import dsn_passwords, has_password, known_secrets, redact, redact_dsn, redact_secrets

SECRET = "Zq8-s3cr3t-Pw"
CLOSED_PORT = 9  # discard: nothing listens on it here


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"postgresql://seg:{SECRET}@db.internal:5432/analytics", "postgresql://seg:***@db.internal:5432/analytics"),
        ("error at postgresql+psycopg2://u:p@ss@h/db, retrying", "error at postgresql+psycopg2://u:***@h/db, retrying"),
        (f"https://admin:{SECRET}@mlflow.corp/#/runs", "https://admin:***@mlflow.corp/#/runs"),
        (f"host=db user=seg password={SECRET} dbname=x", "host=db user=seg password=*** dbname=x"),
        ("host=db password='a b\\'c' dbname=x", "host=db password=*** dbname=x"),
        (f"postgresql://u@h/db?sslmode=require&password={SECRET}", "postgresql://u@h/db?sslmode=require&password=***"),
        (f'{{"PASSWORD": "{SECRET}", "user": "u"}}', '{"PASSWORD": "***", "user": "u"}'),
        (f"a://u:{SECRET}@h and b://v:{SECRET}@k", "a://u:***@h and b://v:***@k"),
    ],
)  # fmt: skip
def test_passwords_in_urls_and_dsns_are_masked(text, expected):
    assert redact_dsn(text) == expected
    assert has_password(text) and not has_password(expected)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://postgres@127.0.0.1:5432/seg",  # user, no password
        "postgresql:///seg?host=/var/run/postgresql",
        "http://127.0.0.1:5000/#/experiments/1/runs/abc",  # host:port is not user:password
        "sqlite:////home/seg/.seg/mlflow.db",
        "write to anna.lopez@example.org or call +34 611 222 333",
        "host=db user=seg dbname=x sslmode=require",
        "PostgreSQL schema seg_pipeline, warehouse schema published",
    ],
)
def test_text_without_passwords_is_unchanged(text):
    assert redact_dsn(text) == text and not has_password(text)


def test_known_secrets_come_from_the_environment():
    environ = {
        "SEG_PSEUDO_KEY": "pseudo-key-0123456789",
        "SEG_PUBLISH_DSN": "postgresql://seg:p%40ss-word@db/analytics",
        "DAGSTER_PG_URL": f"postgresql://dagster:{SECRET}@db/dagster",
        "MY_API_TOKEN": "tok-abcdefgh",
        "MY_KEY": "short",  # too short to mask without masking ordinary words
        "HOME": "/root",
    }
    found = known_secrets(environ)
    assert set(found) == {"pseudo-key-0123456789", "p%40ss-word", "p@ss-word", SECRET, "tok-abcdefgh"}
    assert known_secrets(environ, extra_env=["HOME"]) == known_secrets(environ)  # "/root" is too short
    assert "company-secret-value" in known_secrets({"SEG_CUSTOM": "company-secret-value"}, ["SEG_CUSTOM"])
    assert dsn_passwords("host=h password='x y z'") == ["x y z"]
    text = "key pseudo-key-0123456789 and p@ss-word in a message"
    assert redact_secrets(text, found) == "key *** and *** in a message"


def test_redact_masks_dsns_and_the_secrets_of_this_process(monkeypatch):
    monkeypatch.setenv("SEG_PSEUDO_KEY", "pseudo-key-from-env-42")
    text = f"key=pseudo-key-from-env-42 dsn=postgresql://u:{SECRET}@h/db"
    assert redact(text) == "key=*** dsn=postgresql://u:***@h/db"
    assert redact(text, secrets=[]) == "key=pseudo-key-from-env-42 dsn=postgresql://u:***@h/db"


def test_a_real_connection_error_comes_out_redacted():
    """psycopg's own error to a closed port, our publish error and the CLI's report (with the traceback)
    name the server but never the password."""
    dsn = f"postgresql://postgres:{SECRET}@127.0.0.1:{CLOSED_PORT}/analytics"
    with pytest.raises(psycopg.OperationalError) as raw:
        psycopg.connect(dsn, connect_timeout=5)
    naive = f"could not connect to {dsn}: {raw.value}"  # what a careless message would print
    assert SECRET in naive and SECRET not in redact(naive)
    assert f"postgresql://postgres:***@127.0.0.1:{CLOSED_PORT}/analytics" in redact(naive)

    with pytest.raises(PublishUnavailable) as unreachable:
        open_postgres(dsn)
    message = str(unreachable.value)
    assert message.startswith(
        f"PostgreSQL is not reachable for publishing at postgresql://postgres:***@127.0.0.1:{CLOSED_PORT}/analytics ("
    )
    assert SECRET not in message and "Connection refused" in message

    keyword_dsn = f"host=127.0.0.1 port={CLOSED_PORT} user=postgres password={SECRET} dbname=analytics"
    with pytest.raises(PublishUnavailable) as unreachable:
        open_postgres(keyword_dsn)
    assert "at host=127.0.0.1 port=9 dbname=analytics user=postgres (" in str(unreachable.value)
    assert SECRET not in str(unreachable.value)

    stream = io.StringIO()
    try:
        raise RuntimeError(naive)
    except RuntimeError as exc:
        report_error(exc, verbose=True, stream=stream)
    printed = stream.getvalue()
    assert "Traceback" in printed and "postgres:***@127.0.0.1" in printed and SECRET not in printed


def test_a_malformed_dsn_is_a_config_error_without_its_text():
    with pytest.raises(SegPipelineError, match="DSN for publishing is not valid") as bad:
        open_postgres(f"host=127.0.0.1 password={SECRET} dbname")
    assert SECRET not in str(bad.value) and not isinstance(bad.value, PublishUnavailable)

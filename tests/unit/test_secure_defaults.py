"""Defaults that keep people out: the UIs bind to localhost, passwords come from env vars only."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from seg_pipeline.cli.app import build_parser, main
from seg_pipeline.cli.output import UI_HOST
from seg_pipeline.config import load_settings
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.platform.settings import PipelineSettings, as_overrides
from seg_pipeline.platform.warehouse import warehouse_of

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq8-s3cr3t-Pw"


def recipe(target: str) -> list[str]:
    """The command lines of a Makefile target."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        body.append(line.strip())
    return body


def test_the_dagster_ui_binds_to_localhost_by_default(tmp_path, monkeypatch):
    assert UI_HOST == "127.0.0.1"
    assert build_parser().parse_args(["dev"]).host == "127.0.0.1"
    # `make dev` runs `seg-pipeline dev` without --host, so the default applies
    assert [line for line in recipe("dev") if "seg-pipeline dev" in line] == ["$(BIN)/seg-pipeline dev"]
    # and `dev` hands that host to `dagster dev` (the command is recorded, not run)
    started = []
    monkeypatch.setattr("seg_pipeline.cli.app.subprocess.call", lambda command, **_: started.append(command) or 0)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))  # restored after the test
    saved = dict(os.environ)
    try:
        assert main(["dev", "--home", str(tmp_path)]) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    (command,) = started
    assert command[command.index("-h") + 1] == "127.0.0.1"


def test_the_mlflow_ui_binds_to_localhost():
    (command,) = [line for line in recipe("mlflow") if "mlflow ui" in line]
    assert re.search(r"--host 127\.0\.0\.1(\s|$)", command) and "0.0.0.0" not in command


@pytest.mark.parametrize(
    ("key", "value", "advice"),
    [
        ("publish.postgres_dsn", f"postgresql://seg:{SECRET}@db/analytics", "SEG_PUBLISH_DSN"),
        ("publish.postgres_dsn", f"host=db user=seg password={SECRET}", "PGPASSFILE"),
        ("mlflow.tracking_uri", f"postgresql://mlflow:{SECRET}@db/mlflow", "MLFLOW_TRACKING_PASSWORD"),
        ("mlflow.ui_url", f"https://admin:{SECRET}@mlflow.corp", "MLflow link"),
    ],
)
def test_a_password_in_the_config_is_refused_without_being_echoed(tmp_path, key, value, advice):
    section, name = key.split(".")
    config = tmp_path / "seg.yaml"
    config.write_text(f"{section}:\n  {name}: '{value}'\n", encoding="utf-8")
    for attempt in (lambda: load_settings(config, environ={}),
                    lambda: load_settings(overrides=[f"{key}={value}"], environ={}),
                    lambda: load_settings(environ={f"SEG_{section.upper()}__{name.upper()}": value})):  # fmt: skip
        with pytest.raises(SegPipelineError) as refused:
            attempt()
        message = str(refused.value)
        assert f"config key {key}" in message and "holds a password" in message and advice in message
        assert SECRET not in message


def test_a_config_error_that_quotes_a_value_masks_its_password(tmp_path):
    config = tmp_path / "seg.yaml"
    config.write_text(f"mlflow:\n  tracking_uri: [postgresql://u:{SECRET}@db/mlflow]\n", encoding="utf-8")
    with pytest.raises(SegPipelineError) as refused:
        load_settings(config, environ={})
    assert "postgresql://u:***@db/mlflow" in str(refused.value) and SECRET not in str(refused.value)
    config.write_text(
        f"publish: {{postgres_dsn: postgresql://u:{SECRET}@db/x\n", encoding="utf-8"
    )  # bad YAML
    with pytest.raises(SegPipelineError, match="not valid YAML") as broken:
        load_settings(config, environ={})
    assert SECRET not in str(broken.value)


def test_dsns_without_passwords_and_the_env_var_are_accepted(monkeypatch):
    settings = load_settings(overrides={"publish.postgres_dsn": "postgresql://seg@db/analytics",
                                        "mlflow.tracking_uri": "http://mlflow.internal:5000"}, environ={})  # fmt: skip
    assert settings.publish_dsn == "postgresql://seg@db/analytics"
    monkeypatch.setenv("SEG_PUBLISH_DSN", f"postgresql://seg:{SECRET}@db/analytics")
    settings = load_settings(environ={})
    assert settings.publish_dsn.endswith("@db/analytics")
    # the settings resource's config (shown in the UI, stored with every run) never holds the variable's value:
    # the warehouse reads it from the environment when a run starts
    assert SECRET not in repr(PipelineSettings.of(settings).overrides) and SECRET not in repr(as_overrides(settings))
    assert warehouse_of(settings).postgres_dsn.endswith(f":{SECRET}@db/analytics")


def test_the_instance_examples_take_their_database_url_from_the_environment():
    import yaml

    from seg_pipeline.cli.launch import DAGSTER_YAML

    example = yaml.safe_load((ROOT / "dagster.yaml.example").read_text(encoding="utf-8"))
    assert example["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert not re.search(r"://[^/\s]*:[^@\s]*@", DAGSTER_YAML + yaml.safe_dump(example))

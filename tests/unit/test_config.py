"""The configuration model: layering, path resolution and key-named errors."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from seg_pipeline.config import load_settings
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.contracts import RESERVED_COLUMNS
from tests.unit.sources.unprivileged import child_env, shared_dir, unprivileged_prefix

REPOSITORY = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "seg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, **kwargs) -> str:
    with pytest.raises(SegPipelineError) as info:
        load_settings(write(tmp_path, text), environ={}, **kwargs)
    return str(info.value)


def test_defaults_need_no_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.home == (tmp_path / ".seg").resolve()
    assert settings.landing_dir == settings.home / "landing"
    assert settings.as_of is None  # the run's date
    assert settings.churn.label == "activity" and settings.churn.horizon_days == 90
    assert (settings.segmentation.k_min, settings.segmentation.k_max) == (3, 10)


def test_unknown_key_is_named_with_the_allowed_keys(tmp_path):
    message = error_of(tmp_path, "segmentation:\n  kmax: 4\n")
    assert "segmentation.kmax" in message and "unknown key" in message and "k_max" in message
    assert "seg.yaml" in message


def test_unknown_source_and_source_key(tmp_path):
    assert "unknown source 'ordres'" in error_of(tmp_path, "sources:\n  ordres: {path: a.csv}\n")
    assert "sources.orders.paht" in error_of(tmp_path, "sources:\n  orders: {paht: a.csv}\n")


@pytest.mark.parametrize("value", ["2024-13-01", "'30/06/2024'", "tomorrow"])
def test_bad_date_is_rejected(tmp_path, value):
    message = error_of(tmp_path, f"as_of: {value}\n")
    assert "config key as_of" in message and "YYYY-MM-DD" in message


def test_bad_mappings_are_rejected(tmp_path):
    unknown = error_of(tmp_path, "sources:\n  orders:\n    columns: {amt: Total}\n")
    assert "sources.orders.columns.amt" in unknown and "unknown canonical column" in unknown
    not_a_map = error_of(tmp_path, "sources:\n  orders:\n    columns: [Total]\n")
    assert "sources.orders.columns" in not_a_map and "mapping" in not_a_map
    doubled = error_of(tmp_path, "sources:\n  orders:\n    columns: {amount: T, order_id: T}\n")
    assert "mapped to more than one" in doubled
    empty = error_of(tmp_path, "sources:\n  orders:\n    columns: {amount: ''}\n")
    assert "sources.orders.columns" in empty


def test_missing_required_source_path(tmp_path):
    missing_file = error_of(tmp_path, "sources:\n  crm_customers: {path: nope.csv}\n", check_files=True)
    assert "sources.crm_customers.path" in missing_file and "nope.csv" in missing_file
    nothing = error_of(tmp_path, "home: h\n", check_files=True)
    assert "sources.crm_customers.path" in nothing and "required" in nothing


def test_paths_in_the_file_are_relative_to_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c.csv").write_text("customer_id\n1\n")
    settings = load_settings(
        write(tmp_path, "home: state\nsources:\n  crm_customers: {path: data/c.csv}\n"),
        environ={},
        check_files=True,
    )
    assert settings.home == tmp_path / "state"
    assert settings.source_path("crm_customers") == tmp_path / "data" / "c.csv"


def test_landing_folder_discovery(tmp_path):
    landing = tmp_path / "in"
    landing.mkdir()
    (landing / "crm_customers.parquet").write_bytes(b"")
    settings = load_settings(overrides={"landing": str(landing)}, environ={})
    assert settings.source_path("crm_customers") == landing / "crm_customers.parquet"
    assert settings.source_path("orders") is None


def test_handoff_budget_is_a_quarter_of_the_memory_unless_set(tmp_path):
    import os

    physical_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    unset = load_settings(write(tmp_path, "as_of: 2024-01-31\n"), environ={}).orchestration
    assert unset.handoff_memory_mb is None and abs(unset.handoff_budget_mb - physical_mb / 4) <= 1
    for value in (0, 512):
        settings = load_settings(
            write(tmp_path, f"orchestration: {{handoff_memory_mb: {value}}}\n"), environ={}
        )
        assert settings.orchestration.handoff_budget_mb == value
    assert "handoff_memory_mb" in error_of(tmp_path, "orchestration: {handoff_memory_mb: -1}\n")


def test_layers_file_then_env_then_cli(tmp_path):
    path = write(tmp_path, "as_of: 2024-01-31\nsegmentation: {k_max: 5}\nchurn: {horizon_days: 60}\n")
    env = {"SEG_SEGMENTATION__K_MAX": "7", "SEG_AS_OF": "2024-02-29", "SEG_PSEUDO_KEY": "not-a-config-key"}
    settings = load_settings(path, ["segmentation.k_max=8"], environ=env)
    assert settings.segmentation.k_max == 8  # CLI beats env beats file
    assert settings.as_of == dt.date(2024, 2, 29)  # env beats file
    assert settings.churn.horizon_days == 60  # file beats default
    env_only = load_settings(path, environ={"SEG_CONFIG": "ignored-when-a-file-is-given", **env})
    assert env_only.segmentation.k_max == 7


def test_config_file_from_env(tmp_path):
    path = write(tmp_path, "churn: {label: explicit}\n")
    assert load_settings(environ={"SEG_CONFIG": str(path)}).churn.label == "explicit"


def test_errors_name_env_and_cli_origins(tmp_path):
    with pytest.raises(SegPipelineError) as info:
        load_settings(overrides=["segmentation.k_min=x"], environ={"SEG_AS_OF": "2024-02-30"})
    message = str(info.value)
    assert "config key as_of (from env SEG_AS_OF)" in message
    assert "config key segmentation.k_min (from --set segmentation.k_min)" in message
    with pytest.raises(SegPipelineError, match="segmentaton"):
        load_settings(environ={"SEG_SEGMENTATON__K_MAX": "3"})
    with pytest.raises(SegPipelineError, match="KEY=VALUE"):
        load_settings(overrides=["k_max"], environ={})


def test_ranges_and_cross_field_rules(tmp_path):
    assert "k_min (8) must not exceed k_max (4)" in error_of(tmp_path, "segmentation: {k_min: 8, k_max: 4}\n")
    assert "micro_segments" in error_of(tmp_path, "segmentation: {micro_segments: 20}\n")
    assert "canonical CRM columns" in error_of(tmp_path, "customer_attributes: {numeric: [plan]}\n")
    assert "canonical CRM columns" in error_of(tmp_path, "customer_attributes: {categorical: [email]}\n")
    listed = load_settings(overrides={"customer_attributes.categorical": ["plan", "industry"]}, environ={})
    assert listed.customer_attributes.categorical == ["plan", "industry"]
    assert "churn.label" in error_of(tmp_path, "churn: {label: sometimes}\n")


def test_settings_round_trip_through_the_settings_resource(tmp_path):
    """A run's settings travel as overrides (run config of the settings resource): every value comes back,
    and only what differs from the defaults is listed."""
    from seg_pipeline.platform.settings import PipelineSettings, as_overrides

    given = {"publish.postgres_dsn": "postgresql://u@db-host/db", "as_of": "2024-06-30", "landing": str(tmp_path),
             "segmentation.algorithms": ["kmeans"], "churn.horizon_days": 60, "report.locale": "de_DE",
             "sources.orders.columns": {"amount": "Betrag"}, "actions.control.campaign": "yes",
             "customer_attributes.categorical": ["plan"], "home": str(tmp_path / "home")}  # fmt: skip
    settings = load_settings(overrides=given, environ={})
    overrides = as_overrides(settings)
    assert load_settings(overrides=[f"{k}={v}" for k, v in overrides.items()], environ={}) == settings
    assert overrides["actions.control.campaign"] == '"yes"'  # a string YAML would read as true stays a string
    assert overrides["as_of"] == "2024-06-30" and "churn.snapshots" not in overrides
    assert PipelineSettings.of(settings).resolved == settings
    demo = load_settings(REPOSITORY / "demo.yaml", environ={})
    assert load_settings(overrides=[f"{k}={v}" for k, v in as_overrides(demo).items()], environ={}) == demo


@pytest.mark.parametrize("name", sorted(RESERVED_COLUMNS))
def test_attributes_named_like_the_pipelines_own_columns_are_refused(tmp_path, name):
    """A CRM column called source_row listed as a feature would silently become the pipeline's row number."""
    message = error_of(tmp_path, f"customer_attributes: {{numeric: [tenure, {name}]}}\n")
    assert "config key customer_attributes" in message and "seg.yaml" in message
    assert f"{name!r} is {RESERVED_COLUMNS[name]}" in message and "adds a column of that name" in message
    assert f"sources.crm_customers.columns: {{crm_{name}: {name}}}" in message


def test_a_reserved_column_renamed_by_mapping_is_accepted(tmp_path):
    settings = load_settings(write(tmp_path, (
        "customer_attributes: {numeric: [crm_source_row]}\n"
        "sources:\n  crm_customers:\n    columns: {crm_source_row: source_row}\n"
    )), environ={})  # fmt: skip
    assert settings.customer_attributes.numeric == ["crm_source_row"]


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))


@pytest.mark.parametrize(
    ("make", "kind"),
    [(_fifo, "a FIFO (named pipe)"), (_socket, "a socket"), (Path.mkdir, "a directory"),
     (lambda p: p.symlink_to("/dev/null"), "a character device")],
)  # fmt: skip
def test_an_extract_that_is_not_a_regular_file_is_refused_before_the_run(tmp_path, make, kind):
    """A FIFO, socket, folder or device in the landing folder or at a configured path: it says which."""
    for folder in ("landing", "other"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "crm_customers.csv").write_text("customer_id\nC1\n", encoding="utf-8")
    found_in = tmp_path / "landing" / "orders.csv"
    make(found_in)
    found = error_of(tmp_path, f"landing: {found_in.parent}\n", check_files=True)
    assert f"orders: file {found_in} is {kind}, not a file" in found
    assert "must be a regular file" in found and "not found" not in found
    configured = tmp_path / "web.csv"
    make(configured)
    text = f"landing: {tmp_path / 'other'}\nsources: {{web_events: {{path: {configured}}}}}\n"
    message = error_of(tmp_path, text, check_files=True)
    assert f"config key sources.web_events.path: {configured} is {kind}, not a file" in message


CLI = str(Path(sys.executable).parent / "seg-pipeline")


def run_as_unprivileged(shared: Path, landing: Path, sources: str = "") -> subprocess.CompletedProcess:
    """`seg-pipeline run` as a user file permissions apply to, with ``landing`` (and ``sources``)."""
    config = shared / "seg.yaml"
    config.write_text(f"home: {shared / 'home'}\nlanding: {landing}\n{sources}", encoding="utf-8")
    config.chmod(0o644)
    return subprocess.run([*unprivileged_prefix(), CLI, "run", "--config", str(config)], cwd=shared,
                          env=child_env(shared), capture_output=True, text=True, timeout=120)  # fmt: skip


def test_an_unreadable_extract_is_refused_before_the_run():
    """Mode 000 for the user the pipeline runs as, or a folder it may not enter: `run` stops at once (exit
    2) with one error naming the file, the user and what to do; no run starts, so nothing is retried."""
    unprivileged_prefix()  # skips, saying why, where permissions cannot be tested
    with shared_dir() as shared:
        landing = shared / "landing"
        landing.mkdir(mode=0o755)
        (landing / "crm_customers.csv").write_text("customer_id\nC1\n", encoding="utf-8")
        locked = landing / "orders.csv"
        locked.write_text("customer_id,order_date,amount\n", encoding="utf-8")
        locked.chmod(0o000)
        unreadable = run_as_unprivileged(shared, landing)
        closed = shared / "closed"
        closed.mkdir(mode=0o700)  # the test user's folder: the other user may not look inside
        (closed / "web.csv").write_text("ts,customer_id\n", encoding="utf-8")
        locked.chmod(0o644)
        unreachable = run_as_unprivileged(
            shared, landing, f"sources: {{web_events: {{path: {closed}/web.csv}}}}\n"
        )
        closed_landing = run_as_unprivileged(shared, closed)
        home_created = (shared / "home").exists()
    assert unreadable.returncode == 2, unreadable.stdout + unreadable.stderr
    message = unreadable.stderr
    assert f"error: orders: file {locked} is not readable: permission denied for " in message
    assert "the user the pipeline runs as" in message and "permissions ----------" in message
    assert "Give that user read permission" in message and "Traceback" not in message
    assert unreachable.returncode == 2 and "config key sources.web_events.path" in unreachable.stderr
    assert "cannot be reached: permission denied on one of its folders" in unreachable.stderr
    assert (
        closed_landing.returncode == 2
        and f"the landing folder {closed} is not readable" in closed_landing.stderr
    )
    assert not home_created  # refused before anything of the run


def test_the_stable_window_must_be_shorter_than_its_timeout(tmp_path):
    settings = load_settings(environ={})
    assert settings.orchestration.sources_stable_seconds == 2
    assert settings.orchestration.sources_stable_timeout_seconds == 120
    message = error_of(
        tmp_path, "orchestration: {sources_stable_seconds: 30, sources_stable_timeout_seconds: 10}\n"
    )
    assert "sources_stable_seconds must be below sources_stable_timeout_seconds" in message


def test_unknown_seg_variables_are_named_with_the_closest_known_one():
    from seg_pipeline.config import unknown_env_vars

    settings = load_settings(environ={})
    known = {"SEG_AS_OF": "2024-06-30", "SEG_CONFIG": "x.yaml", "SEG_PUBLISH_DSN": "postgresql://h/db",
             "SEG_PSEUDO_KEY": "k", "SEG_TEST_PG_URL": "postgresql://h/db", "SEG_CHURN__HORIZON_DAYS": "30",
             "SEG_HOME": "/tmp/h", "PATH": "/bin"}  # fmt: skip
    assert unknown_env_vars(known, settings) == []
    typos = {"SEG_ASOF": "2024-06-30", "SEG_PUBLISH_DNS": "postgresql://h/db", "SEG_XYZZY": "1"}
    assert unknown_env_vars({**known, **typos}, settings) == [
        "environment variable SEG_ASOF is not a seg-pipeline setting and is ignored; "
        "did you mean SEG_AS_OF (config key as_of)?",
        "environment variable SEG_PUBLISH_DNS is not a seg-pipeline setting and is ignored; "
        "did you mean SEG_PUBLISH_DSN?",
        "environment variable SEG_XYZZY is not a seg-pipeline setting and is ignored",
    ]
    # the variable the config names for the pseudonymization key is read, whatever its name
    custom = load_settings(overrides={"privacy.pseudonymization_key_env": "SEG_ACME_KEY"}, environ={})
    assert unknown_env_vars({"SEG_ACME_KEY": "k"}, custom) == []
    (warning,) = unknown_env_vars({"SEG_ACME_KEY": "k"}, settings)
    assert "SEG_ACME_KEY is not a seg-pipeline setting" in warning

"""The pipeline as a person meets it: the Dagster webserver's GraphQL API and pages, the MLflow UI, the
Data Docs and the segment report (on the docs server `seg-pipeline dev` runs), each served for real and (for
pages) rendered in headless Chromium.

`make screenshots` runs this module against the demo home (`make demo`) with SCREENSHOTS_FROM and
SCREENSHOTS_TO set, which turns the screenshots it takes into the README's pictures under docs/img/.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By

from seg_pipeline.config import load_settings
from seg_pipeline.definitions import build_definitions
from seg_pipeline.platform.docs_server import serving, settings_roots
from tests.e2e import ui
from tests.e2e.test_cli import cli
from tests.integration.support import QUICK_ENV

AS_OF = "2024-06-30"
# Read at import: the autouse fixture in tests/conftest.py clears SEG_* from the environment.
SCREENSHOTS_FROM = os.environ.get("SCREENSHOTS_FROM")  # a project folder where `make demo` has run
SCREENSHOTS_TO = os.environ.get("SCREENSHOTS_TO")  # where the PNGs go (docs/img for the README)
SCREENSHOTS_CONFIG = os.environ.get("SCREENSHOTS_CONFIG")  # that project's config file (demo.yaml)
GROUPS = ("raw", "clean", "features", "segmentation", "churn", "outcomes", "published")


@dataclass
class Project:
    cwd: Path
    home: Path
    env: dict[str, str]  # what the servers are started with: the same settings the run had
    config: str | None
    docs_port: int  # where the run's links point (orchestration.docs_port)

    @property
    def settings(self):
        overrides = [f"home={self.home}", f"orchestration.docs_port={self.docs_port}"]
        return load_settings(self.config, overrides + ([] if self.config else [f"as_of={AS_OF}"]))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    """A home where a full refresh has completed: the demo's (for screenshots) or a small fresh one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
    base["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if SCREENSHOTS_FROM:
        cwd = Path(SCREENSHOTS_FROM).resolve()
        config = str((cwd / SCREENSHOTS_CONFIG).resolve()) if SCREENSHOTS_CONFIG else None
        home = load_settings(config, []).home if config else cwd / ".seg"
        env = {**base, "DAGSTER_HOME": str(home / "dagster"), "SEG_HOME": str(home)}
        if config:
            env["SEG_CONFIG"] = config
        assert (home / "warehouse.duckdb").exists(), f"no demo run in {home}: run `make demo` first"
        return Project(cwd, home, env, config, load_settings(config, []).orchestration.docs_port)
    cwd = tmp_path_factory.mktemp("ui_project")
    generated = cli("generate", "--customers", "800", "--seed", "5", "--as-of", AS_OF, cwd=cwd)
    assert generated.returncode == 0, generated.stderr
    docs_port = ui.free_port()  # not 3001: a `make dev` may be running on this machine
    run_env = {**QUICK_ENV, "SEG_ORCHESTRATION__DOCS_PORT": str(docs_port)}
    ran = cli("run", "--as-of", AS_OF, "--quiet", cwd=cwd, env=run_env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    home = cwd / ".seg"
    env = {**base, **run_env, "DAGSTER_HOME": str(home / "dagster"), "SEG_AS_OF": AS_OF}
    return Project(cwd, home, env, None, docs_port)


@pytest.fixture(scope="module")
def webserver(project, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "dagster-webserver.log"
    with ui.dagster_webserver(project.cwd, project.env, log) as url:
        ui.skip_dagster_welcome(url)
        yield url


@pytest.fixture(scope="module")
def docs(project) -> str:
    """The Data Docs and report server, as `seg-pipeline dev` starts it beside the UI; yields its base URL
    (the one the run's links point at)."""
    settings = project.settings
    with serving(settings_roots(settings), "127.0.0.1", project.docs_port) as server:
        assert server.url == settings.orchestration.docs_url
        yield server.url


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return Path(SCREENSHOTS_TO).resolve() if SCREENSHOTS_TO else tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def browser():
    reason = ui.chromium_missing()
    if reason:
        pytest.skip(reason)
    with ui.chromium() as driver:
        yield driver


_REPOSITORY_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name
    jobs { name }
    schedules { name cronSchedule executionTimezone scheduleState { status } }
    sensors { name sensorType sensorState { status } }
    assetGroups { groupName } } } } }
"""

_ASSETS_QUERY = """
{ assetNodes {
    assetKey { path } groupName jobNames
    assetMaterializations(limit: 1) { runId metadataEntries { label
        ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path } } }
    assetChecksOrError { ... on AssetChecks { checks { name blocking
        executionForLatestMaterialization { status runId evaluation { success
            metadataEntries { label ... on UrlMetadataEntry { url }
                ... on PathMetadataEntry { path } } } } } } } } }
"""

_RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId jobName status } } } }
"""


def _assets(webserver: str) -> dict[str, dict]:
    nodes = ui.graphql(webserver, _ASSETS_QUERY)["assetNodes"]
    return {"/".join(node["assetKey"]["path"]): node for node in nodes}


def _metadata(entries: list[dict]) -> dict[str, str]:
    return {e["label"]: e.get("url") or e.get("path") for e in entries if e.get("url") or e.get("path")}


def _successful_runs(webserver: str) -> set[str]:
    runs = ui.graphql(webserver, _RUNS_QUERY)["runsOrError"]["results"]
    assert any(r["jobName"] == "full_refresh" and r["status"] == "SUCCESS" for r in runs), runs
    return {r["runId"] for r in runs if r["status"] == "SUCCESS"}


def test_graphql_shows_the_graph_checks_jobs_schedule_and_sensors(project, webserver, docs):
    definitions = build_definitions(project.settings)
    graph = definitions.resolve_asset_graph()
    expected_assets = {key.to_user_string() for key in graph.get_all_asset_keys()}
    expected_checks = {key.name for key in graph.asset_check_keys}

    repository = ui.graphql(webserver, _REPOSITORY_QUERY)["repositoriesOrError"]["nodes"][0]
    assert {g["groupName"] for g in repository["assetGroups"]} == set(GROUPS)
    assert {"full_refresh", "rescore"} <= {j["name"] for j in repository["jobs"]}
    schedules = {s["name"]: s for s in repository["schedules"]}
    nightly = schedules["nightly_full_refresh"]
    assert nightly["cronSchedule"] == project.settings.orchestration.schedule_cron
    assert nightly["executionTimezone"] == project.settings.orchestration.schedule_timezone
    assert nightly["scheduleState"]["status"] == "STOPPED"  # a new deployment turns it on deliberately
    sensors = {s["name"]: s for s in repository["sensors"]}
    assert sensors["landing_extracts"]["sensorType"] == "STANDARD"
    assert sensors["run_failure_alerts"]["sensorType"] == "RUN_STATUS"
    assert sensors["run_failure_alerts"]["sensorState"]["status"] == "RUNNING"

    succeeded = _successful_runs(webserver)
    assets = _assets(webserver)
    assert set(assets) == expected_assets
    for group in GROUPS:
        assert any(a["groupName"] == group for a in assets.values()), group
    for key, node in assets.items():
        assert "full_refresh" in node["jobNames"], key
        assert node["assetMaterializations"], f"{key} was never materialized"
        assert node["assetMaterializations"][0]["runId"] in succeeded, key

    checks = {c["name"]: c for node in assets.values() for c in node["assetChecksOrError"]["checks"]}
    assert set(checks) == expected_checks
    gates = [c for c in checks.values() if c["blocking"]]
    assert len(gates) >= 10, sorted(checks)
    for name, check in checks.items():
        execution = check["executionForLatestMaterialization"]
        assert execution is not None and execution["runId"] in succeeded, name
        if check["blocking"]:  # every gate passed, or nothing downstream would be materialized
            assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"], name
    # the GX gates link their Data Docs page on the docs server, with the page's file beside the link
    gx_gates = [
        c
        for c in gates
        if "data_docs" in _metadata(c["executionForLatestMaterialization"]["evaluation"]["metadataEntries"])
    ]
    assert len(gx_gates) >= 8
    for check in gx_gates:
        metadata = _metadata(check["executionForLatestMaterialization"]["evaluation"]["metadataEntries"])
        link, page = metadata["data_docs"], Path(metadata["data_docs_path"])
        assert link.startswith(f"{docs}/datadocs/validations/") and page.is_file(), link
        assert ui.http_get(link) == page.read_bytes()
        assert metadata["data_docs_index"] == f"{docs}/datadocs/index.html"
    report = _metadata(assets["segment_report"]["assetMaterializations"][0]["metadataEntries"])
    assert report["report"].startswith(f"{docs}/reports/segment_report_")
    assert ui.http_get(report["report"]) == Path(report["report_path"]).read_bytes()
    assert ui.http_get(report["latest"]) == Path(report["latest_path"]).read_bytes()


def test_browser_shows_lineage_checks_mlflow_data_docs_and_report(
    project, webserver, docs, browser, shots, tmp_path_factory
):
    assets = _assets(webserver)

    # 1. the lineage of a published table, back to the raw extracts
    browser.set_window_size(1800, 1400)
    browser.get(
        f"{webserver}/assets/published_churn_scores?view=lineage&lineageScope=upstream&lineageDepth=4"
    )
    ui.wait_for_text(browser, ["churn_scores", "Upstream", "Graph depth"])
    expected = {"raw_orders", "clean_orders", "customer_features", "churn_training_set", "churn_model"}
    drawn = ui.wait_until(lambda: expected <= ui.asset_node_names(browser), 60, "the asset graph's nodes")
    assert drawn, f"lineage graph shows {sorted(ui.asset_node_names(browser))}"
    # every node on this page was materialized by the run: wait for the live status to colour them
    ui.wait_until(
        lambda: ui.green_asset_nodes(browser) >= len(ui.asset_node_names(browser)), 60, "node status"
    )
    ui.screenshot(browser, shots / "dagster-lineage.png")

    # 2. a gate's result with its Data Docs link
    browser.set_window_size(1600, 1000)
    browser.get(f"{webserver}/assets/clean_customers?view=checks")
    page = ui.wait_for_text(
        browser, ["clean_customers_quality", "Passed", "data_docs", "expectations_evaluated"]
    )
    assert "This is a blocking asset check" in page
    docs_links = ui.links_to(browser, f"{docs}/datadocs/validations/clean_customers/", ".html")
    assert docs_links, ui.links_to(browser, "")
    ui.screenshot(browser, shots / "dagster-check.png")

    # 3. clicking that link opens the validation's Data Docs page (in a new tab), expectations listed
    ui_tab = browser.current_window_handle
    browser.find_element(By.CSS_SELECTOR, f'a[href="{docs_links[0]}"]').click()
    ui.wait_until(
        lambda: len(browser.window_handles) > 1 or browser.current_url == docs_links[0], 30, "a tab"
    )
    browser.switch_to.window(next((h for h in browser.window_handles if h != ui_tab), ui_tab))
    ui.wait_for_text(browser, ["clean_customers", "Expectation", "values must never be null"])
    assert browser.current_url == docs_links[0]
    assert browser.execute_script("return typeof jQuery") == "function"  # its scripts came from the server
    if browser.current_window_handle != ui_tab:
        browser.close()
        browser.switch_to.window(ui_tab)

    # 4. the churn model's MLflow run, through the link the pipeline recorded on the asset
    run_link = _metadata(assets["churn_model"]["assetMaterializations"][0]["metadataEntries"])["mlflow_run"]
    fragment = urllib.parse.urlparse(run_link).fragment
    assert re.fullmatch(r"/experiments/\d+/runs/[0-9a-f]{32}", fragment), run_link
    log = tmp_path_factory.mktemp("logs") / "mlflow-ui.log"
    with ui.mlflow_ui(project.settings.mlflow_tracking_uri, project.cwd, project.env, log) as mlflow_url:
        browser.get(f"{mlflow_url}/#{fragment}")
        page = ui.wait_for_text(browser, ["seg_pipeline_churn", "holdout_roc_auc", "Registered models"])
        assert "Finished" in page and "seg_pipeline_churn" in page
        ui.close_mlflow_assistant(browser)
        ui.screenshot(browser, shots / "mlflow-run.png")

    # 5. the segment report at 1,280 px, with its figures loaded, and its retention list with the action plan
    browser.set_window_size(1280, 2000)
    report = _metadata(assets["segment_report"]["assetMaterializations"][0]["metadataEntries"])["report"]
    browser.get(report)
    ui.wait_for_text(
        browser,
        [
            "Summary",
            "Segments",
            "Lifecycle stages",
            "Churn risk",
            "Retention list",
            "Trends",
            "Segment migration",
            "Churn model",
            "Data drift",
            "For analysts",
        ],
    )
    assert ui.loaded_images(browser) >= 4
    ui.screenshot(browser, shots / "segment-report.png")
    browser.get(report + "#retention")
    ui.wait_for_text(browser, ["Retention list", "Personal outreach", "Expected loss"])
    ui.screenshot(browser, shots / "segment-report-actions.png")
    browser.get(report + "#outcomes")  # the demo's second run judged the first: its scores and uplift
    ui.wait_for_text(browser, ["turned out", "A publish's churn probabilities are a forecast"])
    ui.screenshot(browser, shots / "segment-report-outcomes.png")


def test_data_docs_index_lists_the_validations_with_the_network_cut_off(project, docs, tmp_path):
    """GX's pages load jQuery, Bootstrap and bootstrap-table from CDNs: without a network the index was
    headings and an empty table. Served with their local copies, it lists every validation of the run."""
    reason = ui.chromium_missing()
    if reason:
        pytest.skip(reason)
    site = project.settings.datadocs_dir
    validations = len(list(site.glob("validations/*/*/*/*.html")))
    assert validations >= 8
    with ui.chromium(offline=True) as browser:
        browser.set_script_timeout(30)
        browser.get(f"{docs}/datadocs/index.html")
        page = ui.wait_for_text(browser, ["Validation Results", "clean_customers", f"of {validations} rows"])
        assert "Showing 1 to" in page
        rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr[data-index]")
        assert len(rows) >= min(validations, 10), len(rows)  # one page of the table
        assert all(url.startswith(f"{docs}/datadocs/") for url in ui.loaded_resources(browser))
        ui.screenshot(browser, tmp_path / "data-docs-offline.png")  # drawn, not a blank page
        # a row opens its validation's page, also rendered from local copies

        def click_a_row() -> bool:  # the table may redraw itself (filters) between finding and clicking
            try:
                browser.find_element(By.CSS_SELECTOR, "table tbody tr[data-index]").click()
            except StaleElementReferenceException:
                return False
            return True

        ui.wait_until(click_a_row, 30, "a row of the validations table")
        ui.wait_for_text(browser, ["Expectation Validation Result", "Overview"])
        assert "/datadocs/validations/" in browser.current_url
        assert all(url.startswith(f"{docs}/datadocs/") for url in ui.loaded_resources(browser))
        # and the network was cut: a CDN the pages once used cannot be fetched, the docs server can
        assert ui.fetch_fails(browser, "https://code.jquery.com/jquery-3.7.1.min.js")
        assert not ui.fetch_fails(browser, f"{docs}/datadocs/index.html")

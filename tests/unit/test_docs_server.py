"""The Data Docs and report server of `seg-pipeline dev`, on a real socket: it serves <home>/datadocs under
/datadocs/ and <home>/reports under /reports/, nothing else of the home, whatever the path's spelling;
and the URLs the pipeline records for those files."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest

from seg_pipeline.config import load_settings
from seg_pipeline.links import DATADOCS_ROUTE, REPORTS_ROUTE, datadocs_url, report_url, served_url
from seg_pipeline.platform.docs_server import DocsServer, serving, settings_roots

SECRET = "the pseudonymization key"


@pytest.fixture
def home(tmp_path) -> Path:
    """A home with Data Docs, reports and, beside them, files that must never be served."""
    home = tmp_path / "home"
    page = home / "datadocs" / "validations" / "raw orders" / "run 1" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text("<h1>raw_orders validation</h1>", encoding="utf-8")
    (home / "datadocs" / "index.html").write_text("<h1>index of validations</h1>", encoding="utf-8")
    (home / "datadocs" / "static").mkdir()
    (home / "datadocs" / "static" / "app.js").write_text("var docs = 1;", encoding="utf-8")
    (home / "reports").mkdir()
    (home / "reports" / "latest.html").write_text("<h1>segment report</h1>", encoding="utf-8")
    (home / "secrets").mkdir()
    (home / "secrets" / "pseudo.key").write_text(SECRET, encoding="utf-8")
    (home / "warehouse.duckdb").write_text(SECRET, encoding="utf-8")
    (tmp_path / "outside.txt").write_text(SECRET, encoding="utf-8")
    os.symlink(home / "secrets" / "pseudo.key", home / "datadocs" / "linked.key")
    return home


@pytest.fixture
def server(home):
    roots = {DATADOCS_ROUTE: home / "datadocs", REPORTS_ROUTE: home / "reports"}
    with serving(roots) as running:
        yield running


def request(server: DocsServer, path: str, method: str = "GET") -> tuple[int, http.client.HTTPMessage, str]:
    """The path is sent exactly as given (no client-side normalization of ``..`` or escapes)."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_serves_data_docs_and_reports(server):
    status, headers, body = request(server, "/datadocs/validations/raw%20orders/run%201/page.html")
    assert status == 200 and "raw_orders validation" in body
    assert headers["Content-Type"].startswith("text/html") and headers["Cache-Control"] == "no-cache"
    assert request(server, "/datadocs/index.html")[2] == "<h1>index of validations</h1>"
    assert request(server, "/datadocs/")[2] == "<h1>index of validations</h1>"  # a folder's index.html
    status, headers, body = request(server, "/reports/latest.html")
    assert status == 200 and "segment report" in body
    status, headers, _ = request(server, "/datadocs/static/app.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript"
    status, headers, body = request(server, "/reports/latest.html", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) == len("<h1>segment report</h1>")
    status, headers, _ = request(server, "/datadocs")
    assert status == 301 and headers["Location"] == "/datadocs/"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/index.html",
        "/secrets/pseudo.key",
        "/warehouse.duckdb",
        "/datadocs/../secrets/pseudo.key",
        "/datadocs/../../outside.txt",
        "/reports/../warehouse.duckdb",
        "/datadocs/%2e%2e/secrets/pseudo.key",
        "/datadocs/%2E%2E%2Fsecrets%2Fpseudo.key",
        "/datadocs/..%2f..%2foutside.txt",
        "/datadocs/%252e%252e/secrets/pseudo.key",
        "/%2e%2e/secrets/pseudo.key",
        "/datadocs/..\\secrets\\pseudo.key",
        "/datadocs/linked.key",  # a symlink out of the served folder
        "/datadocs/index.html%00.png",
        "/datadocsx/index.html",
        "//secrets/pseudo.key",
    ],
)
def test_nothing_else_of_the_home_is_reachable(server, path):
    status, _, body = request(server, path)
    assert status == 404, (path, status)
    assert SECRET not in body


def test_only_get_and_head(server):
    assert request(server, "/datadocs/index.html", method="POST")[0] == 501
    assert request(server, "/datadocs/index.html", method="PUT")[0] == 501


def test_stops_listening_when_stopped(home):
    with serving({DATADOCS_ROUTE: home / "datadocs"}) as server:
        address = server.server_address[:2]
        assert request(server, "/datadocs/index.html")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        http.client.HTTPConnection(*address, timeout=5).connect()


def test_urls_are_quoted_paths_under_their_route(tmp_path):
    root = tmp_path / "datadocs"
    page = root / "validations" / "raw orders" / "run 1 é%" / "p#1.html"
    base = "http://127.0.0.1:3001"
    assert served_url(base, DATADOCS_ROUTE, root, page) == (
        "http://127.0.0.1:3001/datadocs/validations/raw%20orders/run%201%20%C3%A9%25/p%231.html"
    )
    assert (
        served_url(base + "/", REPORTS_ROUTE, root, "latest.html")
        == "http://127.0.0.1:3001/reports/latest.html"
    )
    with pytest.raises(ValueError):
        served_url(base, DATADOCS_ROUTE, root, tmp_path / "secrets" / "key")
    with pytest.raises(ValueError):
        served_url(base, DATADOCS_ROUTE, root, "../secrets/key")


def test_urls_follow_the_configured_host_and_port(tmp_path):
    settings = load_settings(
        overrides={"home": str(tmp_path / "home"), "orchestration.docs_port": "3901"}, environ={}
    )
    assert datadocs_url(settings) == "http://127.0.0.1:3901/datadocs/index.html"
    assert report_url(settings) == "http://127.0.0.1:3901/reports/latest.html"
    report = settings.reports_dir / "segment_report_2024-06-30_3f2b9c1e.html"
    assert report_url(settings, report) == (
        "http://127.0.0.1:3901/reports/segment_report_2024-06-30_3f2b9c1e.html"
    )
    assert settings_roots(settings) == {"datadocs": settings.datadocs_dir, "reports": settings.reports_dir}


def test_a_busy_port_is_an_error_before_anything_starts(home):
    with serving({DATADOCS_ROUTE: home / "datadocs"}) as first:
        port = first.server_address[1]
        with pytest.raises(OSError):
            DocsServer({DATADOCS_ROUTE: home / "datadocs"}, port=port)

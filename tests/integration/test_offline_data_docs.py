"""Data Docs of real GX gates open without a network: every page of the built site loads its CSS, JS, fonts
and images from the site itself (as files and over the docs server), and each gate links its page over
http under orchestration.docs_url, with the file beside it."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

import dagster as dg

from seg_pipeline.links import DATADOCS_ROUTE, served_url
from seg_pipeline.platform.docs_server import serving, settings_roots
from tests.integration.support import UP_TO_CLEAN, run_all, settings_for
from tests.integration.test_quality_gates import evaluations

_LOADING_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_LOADED_URL = re.compile(r"\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*[\"']?([^\"')]+)", re.IGNORECASE)


def loaded_urls(page: str) -> set[str]:
    """What a browser fetches to show the page: script and image sources, linked stylesheets and icons, CSS
    url()s (data: URIs aside)."""
    urls = {url for tag in _LOADING_TAG.findall(page) for url in _LOADED_URL.findall(tag)}
    urls |= set(_CSS_URL.findall(page))
    return {url for url in urls if not url.startswith("data:")}


def test_every_page_of_a_real_site_loads_only_files_of_the_site(tmp_path, landing):
    settings = settings_for(tmp_path, landing)
    with dg.instance_for_test() as instance:
        result = run_all(settings, instance, groups=UP_TO_CLEAN)
    assert result.success
    site = settings.datadocs_dir.resolve()
    pages = sorted(site.rglob("*.html"))
    validation_pages = [p for p in pages if p.relative_to(site).parts[0] == "validations"]
    assert site / "index.html" in pages and len(validation_pages) >= 10, pages

    for page in pages:
        html = page.read_text(encoding="utf-8")
        urls = loaded_urls(html)
        assert any("static/vendor/jquery-3.7.1/jquery.min.js" in u for u in urls), page
        for url in urls:
            assert not re.match(r"^(?:[a-z]+:)?//", url, re.IGNORECASE), f"{page} loads {url}"
            target = (page.parent / urllib.parse.unquote(url.split("?")[0])).resolve()
            assert target.is_relative_to(site) and target.is_file(), f"{page}: {url} is not in the site"
        assert "integrity=" not in html and "crossorigin=" not in html  # refused on a page opened as a file

    checks = evaluations(result)
    metadata = checks["raw_orders_quality"].metadata
    page = Path(metadata["data_docs_path"].value)
    assert page.is_file() and page.is_relative_to(site) and result.run_id in str(page)
    link = metadata["data_docs"].value
    assert link == served_url(settings.orchestration.docs_url, DATADOCS_ROUTE, site, page)
    assert link.startswith(f"http://127.0.0.1:3001/datadocs/validations/raw_orders/{result.run_id}/"), link
    assert metadata["data_docs_index"].value == "http://127.0.0.1:3001/datadocs/index.html"
    assert Path(metadata["data_docs_index_path"].value) == site / "index.html"

    # the same page and everything it loads, over the docs server (its own free port here)
    with serving(settings_roots(settings)) as server:
        served = link.replace(settings.orchestration.docs_url, server.url)
        with urllib.request.urlopen(served, timeout=10) as response:
            html = response.read().decode("utf-8")
        assert "raw_orders" in html
        for url in loaded_urls(html):
            with urllib.request.urlopen(urllib.parse.urljoin(served, url), timeout=10) as response:
                assert response.status == 200 and response.read(), url

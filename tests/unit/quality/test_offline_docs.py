"""The glue that makes GX's Data Docs open without a network: every URL GX's page templates load has a local
copy, the copies are the exact files those URLs name (their integrity hashes match), each library comes with
its licence, and ``offline_page`` points a page at them by URLs relative to where the page lies."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import great_expectations

from seg_pipeline.quality.gx import (
    CDN_COPIES,
    GX_IMAGE,
    VENDOR_IN_SITE,
    VENDOR_SOURCE,
    install_vendor_files,
    offline_page,
    vendor_files,
)

TEMPLATES = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
STYLES = TEMPLATES.parent / "static" / "styles" / "data_docs_default_styles.css"
GX_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>")
_EXTERNAL = re.compile(r"\b(?:src|href)=\"(https?://[^\"]+)\"")


def template_tags() -> list[str]:
    return [tag for template in sorted(TEMPLATES.glob("*.j2")) for tag in _TAG.findall(template.read_text())]


def test_every_url_gx_templates_load_has_a_copy():
    """Fails when a GX upgrade loads something new from the network: add its copy to CDN_COPIES."""
    loaded = {url for tag in template_tags() for url in _EXTERNAL.findall(tag)}
    assert loaded, "GX's templates moved; the rewrite would find nothing"
    assert loaded - set(CDN_COPIES) == set()
    files = vendor_files()
    for copy in CDN_COPIES.values():
        assert Path(copy) in files and files[Path(copy)].is_file(), copy
    # images from GX's S3 bucket: the navbar's (built from a template variable) and the dark-mode stylesheet's
    navbar = (TEMPLATES / "top_navbar.j2").read_text()
    assert f'static_images_dir = "{GX_ASSETS}"' in navbar
    images = set(re.findall(r'static_images_dir \+ "([^"]+)"', navbar))
    images |= set(re.findall(re.escape(GX_ASSETS) + r"([\w.-]+)", STYLES.read_text()))
    assert images == {"logo-long.png", "full_logo_dark.png"}
    for image in images:
        assert GX_IMAGE.fullmatch(GX_ASSETS + image), image


def test_the_copies_are_the_files_gx_pins_by_hash():
    pinned = {}
    for tag in template_tags():
        url, integrity = re.search(r'src="([^"]+)"', tag or ""), re.search(r'integrity="sha384-([^"]+)"', tag)
        if url and integrity:
            pinned[url.group(1)] = integrity.group(1)
    assert len(pinned) >= 2, pinned  # popper.js and bootstrap.js
    files = vendor_files()
    for url, digest in pinned.items():
        data = files[Path(CDN_COPIES[url])].read_bytes()
        assert base64.b64encode(hashlib.sha384(data).digest()).decode() == digest, url


def test_each_library_has_its_licence_and_a_line_in_the_readme():
    readme = (VENDOR_SOURCE / "README.md").read_text(encoding="utf-8")
    libraries = sorted(p for p in VENDOR_SOURCE.iterdir() if p.is_dir())
    assert len(libraries) >= 10
    for library in libraries:
        assert list(library.glob("LICENSE*")), f"{library.name} has no LICENSE file"
        name, _, version = library.name.rpartition("-")
        assert f"| {version} |" in readme and name.split(".")[0] in readme, library.name


def test_jquery_comes_from_its_python_package_at_the_pinned_version():
    jquery = vendor_files()[Path(CDN_COPIES["https://code.jquery.com/jquery-3.7.1.min.js"])]
    assert jquery.read_bytes().startswith(b"/*! jQuery v3.7.1 |")


PAGE = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="shortcut icon" href="../../../static/images/favicon.ico" type="image/x-icon"/>
<style>.navbar-brand a { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png') 0 0 no-repeat; }</style>
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<script src="https://cdn.jsdelivr.net/npm/vega-lite@5"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-JjSmVgyd0p3pXB1rRibZUAYoIIy6OrQ6VrjIEaFf/nJGzIxFDsf4x0xIM+B07jRM" crossorigin="anonymous"></script>
</head><body>
<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=20240630T000000.000000Z&dataContextId=0d6b" alt="logo">
<a href="https://greatexpectations.io">Great Expectations</a>
<p>see https://cdn.jsdelivr.net/npm/vega@5 for the charts</p>
</body></html>"""  # noqa: E501


def test_offline_page_points_at_the_copies_relative_to_the_page():
    deep = offline_page(PAGE, depth=4)  # validations/<suite>/<run>/<time>/<batch>.html
    up = "../../../../"
    assert f'href="{up}static/vendor/bootstrap-4.3.1/css/bootstrap.min.css"' in deep
    assert f'<script src="{up}static/vendor/vega-5.33.1/vega.min.js"></script>' in deep
    assert f'<script src="{up}static/vendor/vega-lite-5.23.0/vega-lite.min.js"></script>' in deep
    assert f'<script src="{up}static/vendor/bootstrap-4.3.1/js/bootstrap.min.js"></script>' in deep
    assert f'<img src="{up}static/images/logo-long.png" alt="logo">' in deep  # no tracking query
    assert f"url('{up}static/images/logo-long.png')" in deep
    assert f'href="{up}static/images/favicon.ico"' in deep  # GX's own is one folder short
    assert not GX_IMAGE.search(deep) and "dataContextId" not in deep
    # links a person follows and prose stay as they are
    assert (
        '<a href="https://greatexpectations.io">' in deep
        and "see https://cdn.jsdelivr.net/npm/vega@5 for" in deep
    )
    top = offline_page(PAGE, depth=0)
    assert '<script src="static/vendor/vega-5.33.1/vega.min.js"></script>' in top
    assert offline_page(deep, depth=4) == deep


def test_install_copies_every_file_once(tmp_path):
    site = tmp_path / "datadocs"
    install_vendor_files(site)
    files = vendor_files()
    for relative, source in files.items():
        assert (site / VENDOR_IN_SITE / relative).read_bytes() == source.read_bytes(), relative
    stamp = {r: (site / VENDOR_IN_SITE / r).stat().st_mtime_ns for r in files}
    install_vendor_files(site)
    assert stamp == {r: (site / VENDOR_IN_SITE / r).stat().st_mtime_ns for r in files}
    assert not list(site.rglob("*.tmp"))

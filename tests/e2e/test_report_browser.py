"""The segment report as a reader sees it, in headless Chromium: at a 1,280 px window no wide table scrolls
sideways or clips a column, and printed on A4 every column is on paper.

The reports are rendered from constructed inputs (no pipeline run): one with 9 segments with long names and
long traits (the migration shown as wrapped rows), one with 5 (the migration as a from x to matrix).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from seg_pipeline.publish.report import write_report
from tests.e2e import ui
from tests.unit.publish.test_report import make_inputs

pytestmark = pytest.mark.skipif(ui.chromium_missing() is not None, reason=str(ui.chromium_missing()))

LONG_NAMES = {
    1: "High-value loyal customers who order through the mobile app every week",
    2: "Occasional weekend shoppers with large baskets and seasonal peaks",
    3: "Lapsed former regulars (last purchase over a year ago)",
    4: "New customers in their first ninety days after the welcome offer",
    5: "Discount hunters buying only during sales & promotional campaigns",
    6: "Business accounts with invoicing, several buyers and negotiated terms",
    7: "Support-heavy customers with frequent technical tickets and returns",
    8: "Gift buyers active around the holidays only",
    9: "Steady mid-value customers",
}
LONG_TRAITS = (
    "orders 2.3× as often as the average customer; spends 1,250.00 a year (typical: 480.00); last purchase "
    "12 days ago (typical: 40 days); 64% of orders through the mobile app (typical: 21%); opens 8 of 10 "
    "newsletters (typical: 3 of 10)"
)
WIDTH, HEIGHT = 1280, 900
A4_PRINTABLE_PX = 718  # 190 mm (A4's 210 mm less 10 mm margins) at 96 CSS px per inch
WIDE_TABLES = {
    "segments": "#segments table.segments",
    "tiers per segment": "#churn-risk table.tiers",
    "action plan": "#retention table.plan",
    "migration": "#migration table",
    "uplift": "#outcomes table.uplift",
    "judged publishes": "#outcomes table.judged",
}


def _report(tmp_path: Path, segments: int) -> Path:
    names = {sid: name for sid, name in LONG_NAMES.items() if sid <= segments}
    inputs = make_inputs(names=names, n=900, history_runs=5)
    profiles = inputs.segment_profiles.assign(top_traits=LONG_TRAITS)
    return write_report(dataclasses.replace(inputs, segment_profiles=profiles), tmp_path)


@dataclasses.dataclass
class Report:
    segments: int
    path: Path


@pytest.fixture(scope="module", params=[9, 5], ids=["9-segments", "5-segments"])
def report(request, tmp_path_factory) -> Report:
    return Report(request.param, _report(tmp_path_factory.mktemp("report"), request.param))


@pytest.fixture(scope="module")
def browser():
    with ui.chromium(WIDTH, HEIGHT, offline=True) as driver:
        yield driver


def _open(browser, report: Report) -> None:
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    browser.get(report.path.as_uri())
    ui.wait_for_text(browser, ["Retention list", "For analysts"])


def _layouts(browser) -> dict[str, dict]:
    """The layout of each wide table; every one of them must be on the page exactly once."""
    layouts = {}
    for name, selector in WIDE_TABLES.items():
        found = ui.table_layout(browser, selector)
        assert len(found) == 1, f"{name}: {len(found)} tables match {selector}"
        layouts[name] = found[0]
    return layouts


def _assert_fits(name: str, table: dict) -> None:
    """No sideways scroll, every header cell inside the table's wrapper and the viewport, nothing spilling."""
    assert table["scroll_width"] <= table["client_width"], f"{name} scrolls sideways: {table}"
    for header in table["headers"]:
        inside = table["left"] - 0.5 <= header["left"] and header["right"] <= table["right"] + 0.5
        assert inside, f"{name}: header {header['text']!r} is outside its table's box: {header}, {table}"
        assert header["right"] <= table["viewport"] + 0.5, f"{name}: header {header['text']!r} is off-screen"
    assert not table["spilling"], f"{name}: cells wider than their column: {table['spilling'][:5]}"


def test_wide_tables_fit_a_1280_px_window(browser, report):
    _open(browser, report)
    assert browser.execute_script("return document.documentElement.clientWidth") <= WIDTH
    layouts = _layouts(browser)
    for name, table in layouts.items():
        _assert_fits(name, table)
    for table in ui.table_layout(browser, "main table"):  # and every other table of the page
        _assert_fits(table["css"], table)
        # at this width the columns are sized so that no header word has to be broken to fit
        split = [h["text"] for h in table["headers"] if h["split"]]
        assert not split, f"{table['css']}: header words split to fit their column: {split}"
    assert (
        len(layouts["segments"]["headers"]) == 8
        and layouts["segments"]["headers"][-1]["text"] == "Top traits"
    )
    assert [h["text"] for h in layouts["tiers per segment"]["headers"][2:7]] == [
        "Personal outreach", "Semi-automated", "Automated campaign", "No action", "No marketing consent",
    ]  # fmt: skip
    # up to 5 segments (6 destination columns with "left") a matrix, beyond that one wrapped row per segment
    assert ("matrix" in layouts["migration"]["css"]) == (report.segments <= 5), layouts["migration"]["css"]


def test_wide_tables_fit_the_printed_page(browser, report):
    """Laid out with the print stylesheet at A4's printable width, every column still fits."""
    _open(browser, report)
    ui.emulate_print(browser, A4_PRINTABLE_PX)
    assert (
        browser.execute_script("return getComputedStyle(document.querySelector('nav.toc')).display") == "none"
    )
    for name, table in _layouts(browser).items():
        _assert_fits(name, table)
    for table in ui.table_layout(browser, "main table"):
        _assert_fits(table["css"], table)


@pytest.mark.skipif(
    ui.pdftotext_missing() is not None,
    reason=f"reading the printed PDF needs poppler-utils ({ui.pdftotext_missing()}); .ci/run installs it",
)
def test_printed_on_a4_every_column_header_is_on_paper(browser, report, tmp_path):
    _open(browser, report)
    headers = {name: [h["text"] for h in table["headers"]] for name, table in _layouts(browser).items()}
    pdf = ui.print_pdf(browser, tmp_path / "report.pdf")
    assert ui.pdf_info(pdf)["Page size"].endswith("(A4)"), ui.pdf_info(pdf)
    # Headers wrap inside their cells (and very long words may break anywhere), so compare without spaces.
    printed = re.sub(r"\s+", "", ui.pdf_text(pdf))
    for name, texts in headers.items():
        for text in texts:
            assert re.sub(r"\s+", "", text) in printed, f"{name}: header {text!r} is not in the printed PDF"

"""The surfaces people use, started for real on free local ports: the Dagster webserver, the MLflow UI, and
headless Chromium driven through ChromeDriver (Debian packages chromium and chromium-driver)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER_BINARY", "/usr/bin/chromedriver"))
# As the machine's notes say: without the background-networking flags Chromium keeps trying to reach
# Google's hosts, which a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
)
# No network but this machine: every request goes to a proxy on a closed loopback port (Chromium sends
# loopback addresses direct, past any proxy) and every host name fails to resolve.
OFFLINE_FLAGS = (
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(probe: Callable[[], object], timeout: float, what: str, log: Path | None = None):
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` (and the server's log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
            value = probe()
            if value:
                return value
        time.sleep(0.5)
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tail}")


@contextlib.contextmanager
def server(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A server process in its own process group, stopped (with its children) on exit."""
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def graphql(base_url: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise AssertionError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


_LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


@contextlib.contextmanager
def dagster_webserver(project: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """`dagster-webserver` on 127.0.0.1 with the repository's workspace.yaml; yields its base URL once the
    seg_pipeline code location has loaded."""
    port = free_port()
    command = [str(BIN / "dagster-webserver"), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1"]
    with server([*command, "-p", str(port)], project, env, log):
        url = f"http://127.0.0.1:{port}"

        def loaded():
            entries = graphql(url, _LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
            state = {e["name"]: e["locationOrLoadError"] for e in entries}
            location = state.get("seg_pipeline")
            if location and location["__typename"] == "PythonError":
                raise AssertionError(f"code location failed to load: {location['message']}")
            return location and location["__typename"] == "RepositoryLocation"

        wait_until(loaded, 120, "dagster-webserver", log)
        yield url


@contextlib.contextmanager
def mlflow_ui(
    tracking_uri: str, cwd: Path, env: dict[str, str], log: Path, port: int | None = None
) -> Iterator[str]:
    """The MLflow UI (`mlflow ui`, as `make mlflow` starts it) on the project's tracking store; it is also
    the tracking server a pipeline can log to (`mlflow.tracking_uri: http://...`)."""
    port = port or free_port()
    command = [str(BIN / "mlflow"), "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1"]
    with server([*command, "--port", str(port), "--workers", "1"], cwd, env, log):
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(f"{url}/health"), 120, "mlflow ui", log)
        yield url


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None. .ci/run installs both packages."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists() and not shutil.which(p.name)]
    if missing:
        return (
            f"headless Chromium not installed ({', '.join(missing)} missing): "
            "`apt-get install chromium chromium-driver` (as .ci/run does)"
        )
    return None


@contextlib.contextmanager
def chromium(width: int = 1600, height: int = 1000, offline: bool = False) -> Iterator:
    """A fresh headless Chromium (own empty profile) driven by ChromeDriver; ``offline``: it reaches only
    servers on the loopback interface (``OFFLINE_FLAGS``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which(CHROMIUM.name))
        flags = (*CHROMIUM_FLAGS, *(OFFLINE_FLAGS if offline else ()))
        for flag in (*flags, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        driver_path = str(CHROMEDRIVER if CHROMEDRIVER.exists() else shutil.which(CHROMEDRIVER.name))
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        driver.set_page_load_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for_text(driver, texts: list[str], timeout: float = 60) -> str:
    """Wait until every one of ``texts`` is in the page's visible text; return that text."""
    from selenium.webdriver.common.by import By

    def seen():
        body = driver.find_element(By.TAG_NAME, "body").text
        return body if all(t in body for t in texts) else None

    try:
        return wait_until(seen, timeout, f"page {driver.current_url}")
    except TimeoutError:
        body = driver.find_element(By.TAG_NAME, "body").text
        missing = [t for t in texts if t not in body]
        raise AssertionError(
            f"{driver.current_url} never showed {missing}; it shows:\n{body[:2000]}"
        ) from None


def skip_dagster_welcome(base_url: str) -> None:
    """A new Dagster instance greets the first browser with a newsletter dialog over the page; mark it seen
    on the instance (what the dialog's Skip button does) so it never covers what a test looks at."""
    graphql(base_url, "mutation { setNuxSeen }")


def screenshot(driver, path: Path) -> Path:
    """Save a PNG and make sure it shows something (many colours, not a blank or one-colour page)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
    assert len(colours) > 50, f"{path} looks blank ({len(colours)} colours)"
    return path


def fetch_fails(driver, url: str) -> bool:
    """Whether the page in ``driver`` fails to fetch ``url`` at all (network error, not an HTTP status)."""
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {mode: 'no-cors', cache: 'no-store'}).then(() => done(false), () => done(true));"
    )
    return driver.execute_async_script(script, url)


def loaded_resources(driver) -> list[str]:
    """The URL of every resource (script, stylesheet, font, image) the current page has loaded."""
    return driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def _hrefs(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)")


def links_to(driver, prefix: str, suffix: str = "") -> list[str]:
    return [href for href in _hrefs(driver) if href.startswith(prefix) and href.endswith(suffix)]


def asset_node_names(driver) -> set[str]:
    """Names drawn on the asset graph's nodes (long names are shortened with an ellipsis by the UI)."""
    script = "return Array.from(document.querySelectorAll('[class*=assetName]'), e => e.textContent.trim())"
    return set(driver.execute_script(script))


def green_asset_nodes(driver) -> int:
    """Asset graph nodes drawn green (materialized, live status loaded): what a person reads as "done"."""
    script = (
        "return Array.from(document.querySelectorAll('[class*=minimalAssetNodeBox]'))"
        ".filter(e => (e.getAttribute('style') || '').includes('green')).length"
    )
    return driver.execute_script(script)


def loaded_images(driver) -> int:
    """How many <img> on the page have actually decoded (naturalWidth > 0)."""
    return driver.execute_script(
        "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
    )


def close_mlflow_assistant(driver) -> None:
    """Newer MLflow UIs open an assistant side panel; close it so the run fills the picture."""
    from selenium.webdriver.common.by import By

    for panel_title in driver.find_elements(By.XPATH, "//*[normalize-space(text())='MLflow Assistant']"):
        buttons = panel_title.find_elements(By.XPATH, "following::button")
        for button in buttons[:4]:
            label = (button.get_attribute("aria-label") or "").lower()
            if "close" in label:
                button.click()
                time.sleep(0.5)
                return


# ------------------------------------------------------------------------------------- page layout, print

# Per table matching a selector: its wrapper's box and overflow, the viewport's width, each header cell's box,
# the header cells whose words had to be split to fit (measured with wrapping at spaces only, then restored)
# and the cells whose content is wider than the cell (clipped or spilling into the next column).
_TABLE_LAYOUT = """
const viewport = document.documentElement.clientWidth;
return Array.from(document.querySelectorAll(arguments[0])).map(table => {
  const wrap = table.closest('.table-wrap') || table.parentElement;
  const box = wrap.getBoundingClientRect();
  const headers = Array.from(table.querySelectorAll('thead th')).map(th => {
    const rect = th.getBoundingClientRect();
    const wrapping = [th.style.overflowWrap, th.style.wordBreak];
    th.style.overflowWrap = 'normal'; th.style.wordBreak = 'normal';
    const split = th.scrollWidth > th.clientWidth;
    [th.style.overflowWrap, th.style.wordBreak] = wrapping;
    return {text: th.textContent.trim(), left: rect.left, right: rect.right, split: split};
  });
  const spilling = Array.from(table.querySelectorAll('th, td'))
    .filter(cell => cell.scrollWidth > cell.clientWidth + 1).map(cell => cell.textContent.trim());
  return {css: table.className, left: box.left, right: box.right, scroll_width: wrap.scrollWidth,
          client_width: wrap.clientWidth, viewport: viewport, headers: headers, spilling: spilling};
});
"""


def table_layout(driver, selector: str) -> list[dict]:
    """How the tables matching ``selector`` sit in the current page (see _TABLE_LAYOUT)."""
    return driver.execute_script(_TABLE_LAYOUT, selector)


def emulate_print(driver, width: int, height: int = 1100) -> None:
    """Lay the page out as it prints: print media rules on, a viewport as wide as the paper's printable area
    (A4 less 10 mm margins is 718 CSS px)."""
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def print_pdf(driver, path: Path) -> Path:
    """The current page printed to PDF on A4 portrait (WebDriver's print command), backgrounds included."""
    import base64

    from selenium.webdriver.common.print_page_options import PrintOptions

    options = PrintOptions()
    options.page_width, options.page_height = 21.0, 29.7  # cm
    options.orientation = "portrait"
    options.background = True
    path.write_bytes(base64.b64decode(driver.print_page(options)))
    return path


def pdftotext_missing() -> str | None:
    """Why a PDF's text cannot be read here, or None (poppler-utils installs pdftotext and pdfinfo)."""
    missing = [tool for tool in ("pdftotext", "pdfinfo") if not shutil.which(tool)]
    return f"{', '.join(missing)} missing: `apt-get install poppler-utils`" if missing else None


def pdf_text(path: Path) -> str:
    """The PDF's text in the order it was drawn (``pdftotext -raw``): Chromium draws a table cell by cell, so
    a header wrapped over several lines stays together (reading order would interleave neighbouring cells)."""
    done = subprocess.run(
        ["pdftotext", "-raw", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True
    )
    return done.stdout.decode("utf-8")


def pdf_info(path: Path) -> dict[str, str]:
    """pdfinfo's fields (Pages, Page size, ...)."""
    done = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True)
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in done.stdout.splitlines())}

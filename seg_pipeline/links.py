"""The http URLs under which `seg-pipeline dev` serves Data Docs and reports (platform/docs_server.py).

Browsers refuse file:// links from an http page such as the Dagster UI, so every link the pipeline records
is one of these: ``/datadocs/...`` is ``<home>/datadocs``, ``/reports/...`` is ``<home>/reports``.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seg_pipeline.config import Settings

DATADOCS_ROUTE = "datadocs"
REPORTS_ROUTE = "reports"


def served_url(base_url: str, route: str, root: Path, path: Path | str) -> str:
    """The URL of ``path`` (absolute, or relative to ``root``) under ``base_url``/``route``/, URL-quoted.
    ValueError when ``path`` is outside ``root``."""
    path = Path(path)
    relative = path.resolve().relative_to(root.resolve()) if path.is_absolute() else path
    if ".." in relative.parts:
        raise ValueError(f"{path} is outside {root}")
    return f"{base_url.rstrip('/')}/{route}/{urllib.parse.quote(relative.as_posix())}"


def datadocs_url(settings: Settings, page: Path | str = "index.html") -> str:
    """The served URL of a Data Docs page (default: the index of every validation)."""
    return served_url(settings.orchestration.docs_url, DATADOCS_ROUTE, settings.datadocs_dir, page)


def report_url(settings: Settings, report: Path | str = "latest.html") -> str:
    """The served URL of a segment report (default: the latest run's)."""
    return served_url(settings.orchestration.docs_url, REPORTS_ROUTE, settings.reports_dir, report)

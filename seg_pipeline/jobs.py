"""Jobs: what a run materializes."""

from __future__ import annotations

import dagster as dg

FULL_REFRESH = "full_refresh"

full_refresh_job = dg.define_asset_job(
    FULL_REFRESH,
    selection=dg.AssetSelection.all(),
    description="Every asset from the raw extracts to the published tables.",
)

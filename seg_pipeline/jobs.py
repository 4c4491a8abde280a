"""Jobs: what a run materializes."""

from __future__ import annotations

import dagster as dg

FULL_REFRESH = "full_refresh"
RESCORE = "rescore"
# Both jobs publish; dagster.yaml limits runs carrying this tag to one at a time (queued runs from the UI,
# the schedule and the sensor), and the publish step's pool to one slot (every run, also the CLI's).
PUBLISHES_TAG = {"seg_pipeline/publishes": "true"}

full_refresh_job = dg.define_asset_job(
    FULL_REFRESH,
    selection=dg.AssetSelection.all(),
    description="Every asset from the raw extracts to the published tables.",
    tags=PUBLISHES_TAG,
)

# Fresh features scored by the current champion: no segmentation fit and no training. Segments and the
# champion's URI come from the last full refresh (loaded from the warehouse).
rescore_job = dg.define_asset_job(
    RESCORE,
    selection=dg.AssetSelection.groups("raw", "clean", "published")
    | dg.AssetSelection.assets(
        "customer_features", "lifecycle_stage", "churn_scores", "retention_segment", "segment_churn_risk"
    ),  # fmt: skip
    description="Refresh features, score every customer with the champion churn model (no retraining) and "
    "publish; segments come from the last full refresh.",
    tags=PUBLISHES_TAG,
)

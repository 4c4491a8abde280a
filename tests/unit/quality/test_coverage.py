"""One row per key that should have one: what a table-to-table check counts and says."""

from __future__ import annotations

import pandas as pd

from seg_pipeline.quality.coverage import key_coverage


def test_a_score_for_each_profiled_customer_is_complete():
    coverage = key_coverage(pd.Series(["b", "a", "c"]), pd.Series(["a", "b", "c"]))
    assert coverage.complete and coverage.describe("score", "profiled customers") == (
        "one score for each of the 3 profiled customers"
    )


def test_missing_extra_and_repeated_keys_are_each_counted():
    coverage = key_coverage(pd.Series(["a", "a", "x", None]), pd.Series(["a", "b", "c"]))
    assert (coverage.expected, coverage.missing, coverage.extra, coverage.repeated) == (3, 2, 1, 1)
    assert not coverage.complete
    assert coverage.describe("score", "profiled customers") == (
        "2 of the 3 profiled customers without a score; 1 scores for keys that are not profiled customers; "
        "1 repeated scores"
    )

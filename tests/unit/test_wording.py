"""Numbers as a marketing manager reads them, in the configured locale."""

from __future__ import annotations

from seg_pipeline.wording import MISSING, number, percent, points, times


def test_points_are_whole_from_one_point_and_singular_at_one():
    assert (
        points(0.214) == "+21 points" and points(-0.004) == "-0.4 points" and points(0.005) == "+0.5 points"
    )
    assert points(0.0096) == "+1 point" and points(-0.0104) == "-1 point"  # not "+1.0 points"
    assert points(None) == MISSING


def test_numbers_percentages_and_multiples_follow_the_locale():
    assert number(2.54) == "2.5" and number(2.54, "de_DE") == "2,5" and number(1442.3, digits=0) == "1,442"
    assert percent(0.62) == "62%" and percent(0.004) == "0.4%" and percent(0) == "0%"
    assert percent(0.62, "de_DE") == "62\xa0%" and percent(float("nan")) == MISSING
    assert percent(0.125, digits=1) == "12.5%" and percent(0.125, "de_DE", 1) == "12,5\xa0%"
    assert times(2.34) == "2.3×" and times(12.4) == "12×" and times(0.41) == "0.4×"

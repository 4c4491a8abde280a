"""Drift between runs: population stability index (PSI) of key features and of the churn score.

The reference is the distribution the last good publish saw, stored compactly as bins (edges from that
run's deciles, share of customers per bin, plus the share of missing values) so no customer rows need to
be kept. PSI = sum((current - reference) * ln(current / reference)) over the bins, with missing values as
a bin of their own; the usual reading is < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REFERENCE_COLUMNS = ["feature", "bin", "lower", "upper", "share", "as_of", "run_id"]
DRIFT_COLUMNS = ["feature", "psi", "reference_as_of", "reference_run_id", "flagged"]
MISSING_BIN = -1
_FLOOR = 1e-4  # empty bins would make the log infinite; this is the conventional small floor


def reference_bins(values: pd.Series, bins: int = 10) -> pd.DataFrame:
    """Bins of one feature: quantile edges taken from the data (merged where values repeat, so discrete
    features get one bin per value) and each bin's share of customers."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    present = numbers.dropna().to_numpy()
    if len(present):
        inner = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1], method="lower"))
        inner = inner[inner < present.max()]  # an edge at the maximum would leave the top bin empty
    else:
        inner = np.array([])
    lower = np.concatenate([[-np.inf], inner])
    upper = np.concatenate([inner, [np.inf]])
    frame = pd.DataFrame({"bin": np.arange(len(lower)), "lower": lower, "upper": upper})
    frame = pd.concat(
        [frame, pd.DataFrame({"bin": [MISSING_BIN], "lower": [np.nan], "upper": [np.nan]})], ignore_index=True
    )
    frame["share"] = bin_shares(numbers, frame)
    return frame


def bin_shares(values: pd.Series, bins: pd.DataFrame) -> np.ndarray:
    """Share of ``values`` in each of ``bins`` (intervals (lower, upper], the missing bin last)."""
    numbers = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    total = max(len(numbers), 1)
    edges = bins.loc[bins["bin"] != MISSING_BIN, "upper"].to_numpy()[:-1]
    present = numbers[~np.isnan(numbers)]
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    shares = np.append(counts, np.isnan(numbers).sum()) / total
    order = bins["bin"].to_numpy()
    # align to the frame's order: numbered bins first (0..n-1), then the missing bin
    by_bin = dict(zip([*range(len(edges) + 1), MISSING_BIN], shares, strict=True))
    return np.array([by_bin[b] for b in order])


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    ref = np.clip(np.asarray(reference, dtype="float64"), _FLOOR, None)
    cur = np.clip(np.asarray(current, dtype="float64"), _FLOOR, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def build_reference(
    frame: pd.DataFrame, features: list[str], as_of, run_id: str, bins: int = 10
) -> pd.DataFrame:
    """The reference table for the features present in ``frame``: what the next run compares against."""
    parts = [reference_bins(frame[f], bins).assign(feature=f) for f in features if f in frame.columns]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in REFERENCE_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out["as_of"] = pd.Timestamp(as_of)
    out["run_id"] = run_id
    return out[REFERENCE_COLUMNS]


def compare(frame: pd.DataFrame, reference: pd.DataFrame | None, threshold: float) -> pd.DataFrame:
    """PSI per feature present in both this run and the reference; empty without a reference."""
    rows = []
    if reference is not None and len(reference):
        for feature, bins in reference.groupby("feature", sort=False):
            if feature not in frame.columns:
                continue
            value = psi(bins["share"].to_numpy(), bin_shares(frame[feature], bins))
            rows.append(
                {
                    "feature": feature,
                    "psi": value,
                    "reference_as_of": pd.Timestamp(bins["as_of"].iloc[0]),
                    "reference_run_id": str(bins["run_id"].iloc[0]),
                    "flagged": value > threshold,
                }
            )
    out = pd.DataFrame(rows, columns=DRIFT_COLUMNS)
    return out.astype({"psi": "float64", "flagged": "bool"}).sort_values(
        "psi", ascending=False, ignore_index=True
    )

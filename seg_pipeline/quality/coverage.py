"""Whether a table holds exactly one row for each customer it should (e.g. a score for every profiled
customer): GX suites see one table at a time, so this comparison of two tables lives here."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Coverage:
    expected: int  # distinct keys that should have a row
    missing: int  # of those, without a row
    extra: int  # distinct keys with a row that should not have one
    repeated: int  # rows beyond the first of a key

    @property
    def complete(self) -> bool:
        return not (self.missing or self.extra or self.repeated)

    def describe(self, what: str, of: str) -> str:
        if self.complete:
            return f"one {what} for each of the {self.expected:,} {of}"
        found = [
            f"{self.missing:,} of the {self.expected:,} {of} without a {what}" if self.missing else "",
            f"{self.extra:,} {what}s for keys that are not {of}" if self.extra else "",
            f"{self.repeated:,} repeated {what}s" if self.repeated else "",
        ]
        return "; ".join(f for f in found if f)


def key_coverage(rows: pd.Series, expected: pd.Series) -> Coverage:
    """Compare the keys of a table (``rows``, one per row) with the keys that should each have one row."""
    present, wanted = set(rows.dropna()), set(expected.dropna())
    return Coverage(
        expected=len(wanted),
        missing=len(wanted - present),
        extra=len(present - wanted),
        repeated=int(rows.duplicated().sum()),
    )

"""The dates a run's rows may carry: up to as_of, and after it up to the extract's export date.

A run whose as_of is earlier than the day an extract was exported (a backfill, a backtest, the earlier
run outcome monitoring needs) sees rows dated after its as_of. They are outside that run's window, not
bad data: the gates accept them and the clean stage leaves them out, counted. Only a row dated after the
export date itself cannot have happened yet, and stays a future-date error.
"""

from __future__ import annotations

import datetime as dt

from seg_pipeline.config import Settings


def end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 59, 59, 999999))


def exported_on(settings: Settings, source: str) -> dt.date | None:
    """``sources.<source>.exported_on``, else the extract's modification date (UTC); None without a file."""
    configured = settings.source(source).exported_on
    if configured is not None:
        return configured
    path = settings.source_path(source)
    try:
        modified = path.stat().st_mtime if path is not None else None
    except OSError:  # gone or unreadable: the read reports that, the window need not
        return None
    return None if modified is None else dt.datetime.fromtimestamp(modified, dt.UTC).date()


def export_end(as_of: dt.date, exported: dt.date | None) -> dt.datetime:
    """The latest moment a row may be dated without being a future date: the end of as_of's day, or
    of the export date when that is later (an extract cannot hold what happened after it was made)."""
    as_of_end = end_of_day(as_of)
    return max(as_of_end, end_of_day(exported)) if exported is not None else as_of_end

"""Whether two homes hold the same published tables: the check that a refactoring changed no result.

Compares every table of the `published` and `monitoring` schemas of two warehouses (e.g. `make demo` run by two
commits on the same seed and pseudonymization key), row for row after sorting, leaving out what differs by
construction between two runs: Dagster and MLflow run ids, timestamps of when something was written, and
links. Tables only one side has are listed.

Usage: python benchmarks/same_output.py HOME_BEFORE HOME_AFTER [--out results/x.md]
Exit code 0 when every common table is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import pandas as pd

SCHEMAS = ("published", "monitoring")
# differ between any two runs of the same data: ids of the run that wrote a row, when it was written, links
RUN_SPECIFIC = ("run_id", "scored_run_id", "evaluated_run_id", "mlflow_run_id", "recorded_at", "published_at",
                "mlflow_run_url", "report_path")  # fmt: skip


def tables(database: Path) -> dict[str, pd.DataFrame]:
    with duckdb.connect(str(database), read_only=True) as con:
        names = con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema in (?, ?)", SCHEMAS
        ).fetchall()
        return {f"{s}.{t}": con.execute(f'select * from "{s}"."{t}"').fetchdf() for s, t in sorted(names)}


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    kept = frame.drop(columns=[c for c in frame.columns if c in RUN_SPECIFIC or c.endswith("_run_id")])
    kept = kept.reindex(sorted(kept.columns), axis=1)
    return kept.sort_values(list(kept.columns), ignore_index=True, na_position="first") if len(kept.columns) else kept


def compare(before: Path, after: Path) -> list[tuple[str, str]]:
    """(table, verdict) for every table either warehouse has."""
    old, new = tables(before / "warehouse.duckdb"), tables(after / "warehouse.duckdb")
    verdicts = []
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            verdicts.append((name, f"only {'after' if name in new else 'before'}"))
            continue
        a, b = comparable(old[name]), comparable(new[name])
        if list(a.columns) != list(b.columns):
            verdicts.append((name, f"columns differ: {sorted(set(a.columns) ^ set(b.columns))}"))
            continue
        try:
            pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9, atol=1e-12)
            verdicts.append((name, f"identical ({len(a):,} rows)"))
        except AssertionError as exc:
            verdicts.append((name, "differs: " + str(exc).splitlines()[0][:200]))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    verdicts = compare(args.before, args.after)
    lines = ["| table | verdict |", "|---|---|", *(f"| {n} | {v} |" for n, v in verdicts)]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    identical = all(v.startswith("identical") or v.startswith("only after") for _, v in verdicts)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())

"""The clean stage's identity resolution at scale: clean_customers on the CRM of an N-customer company.

Usage: python benchmarks/identity_scale.py N [--code DIR] [--label TEXT] [--variants default exact]

The company is bench_pipeline's cached one (seed 42, as of 2024-06-30, benchmarks/cache/company_N); its CRM
extract is read once with the CRM reader, then clean_customers runs in a child process per variant, with
the seg_pipeline of `--code` (default: this checkout) first on the path, so a `git worktree` of an earlier
commit measures the code before a change on the same input. Wall time and peak RSS of the child are
recorded in benchmarks/results/identity_scale.json and .md, merged by label and variant.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CHILD = """
import datetime as dt, inspect, json, sys, time
import pandas as pd
import seg_pipeline
from seg_pipeline.cleaning.customers import clean_customers
crm = pd.read_parquet(sys.argv[1])
kwargs = dict(key=b"bench", as_of=dt.date(2024, 6, 30), erased=set(), default_consent=True,
              stale_record_days=730, attributes=[], run_id="bench")
if "identity" in inspect.signature(clean_customers).parameters:
    from seg_pipeline.config import IdentityConfig
    kwargs["identity"] = IdentityConfig(probabilistic=sys.argv[2] != "exact")
started = time.perf_counter()
result = clean_customers(crm, **kwargs)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": round(seconds, 1), "imported_from": seg_pipeline.__file__, "rows_in": len(crm), "customers": len(result.customers),
                  "merged": result.accounting["rows_merged_duplicates"],
                  "for_review": len(getattr(result, "review", [])),
                  "model": getattr(result, "identity", {}).get("model", "exact rules only (before)")}))
"""


def crm_parquet(customers: int) -> Path:
    sys.path.insert(0, str(HERE))
    from bench_pipeline import company

    from seg_pipeline.sources.contracts import CRM_CUSTOMERS
    from seg_pipeline.sources.readers import read_source

    landing, _ = company(customers)
    out = HERE / "cache" / f"crm_{customers}.parquet"
    if not out.exists():
        read_source(CRM_CUSTOMERS, landing / "crm_customers.csv")[0].to_parquet(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("customers", type=int)
    parser.add_argument("--code", type=Path, default=HERE.parent)
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--variants", nargs="+", choices=["default", "exact"], default=["default", "exact"])
    args = parser.parse_args()
    crm = crm_parquet(args.customers)
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    path = RESULTS / "identity_scale.json"
    record = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    for variant in args.variants:
        started = time.perf_counter()
        # run from a neutral folder: `python -c` puts the working directory first on the path
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(crm), variant], env=env, stdout=subprocess.PIPE,
            cwd=tempfile.gettempdir(),
        )  # fmt: skip
        out = json.loads(child.stdout.read().splitlines()[-1])  # the child's last line is its result
        _, status, usage = os.wait4(child.pid, 0)
        if status:
            raise SystemExit(f"child failed with status {status}")
        if not Path(out["imported_from"]).resolve().is_relative_to(args.code.resolve()):
            raise SystemExit(f"the child imported {out['imported_from']}, not the code under {args.code}")
        out["wall_seconds"] = round(time.perf_counter() - started, 1)
        out["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
        key = f"{args.customers}: {args.label}, {variant}"
        record["runs"][key] = out
        print(key, out, flush=True)
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# clean_customers at scale (benchmarks/identity_scale.py; 2 CPUs)", "",
        "| customers: code, matcher | CRM rows | seconds in clean_customers | peak RSS (MB) | merged | for review | model |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for key, r in record["runs"].items():
        lines.append(
            f"| {key} | {r['rows_in']:,} | {r['seconds']} | {r['peak_rss_mb']:,} | {r['merged']:,} | "
            f"{r['for_review']:,} | {r['model']} |"
        )
    (RESULTS / "identity_scale.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

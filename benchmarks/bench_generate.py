"""Generator throughput: wall time, rows per second and peak memory of `seg-pipeline generate` at size N.

Usage: python benchmarks/bench_generate.py N [N ...]   (results merged into benchmarks/results/generate.*)
Each size runs in a fresh child process so its peak resident memory is measured alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import RESULTS, open_results

CLI = str(Path(sys.executable).parent / "seg-pipeline")


def measure(customers: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run(
            [CLI, "generate", "--customers", str(customers), "--seed", "1", "--as-of", "2024-06-30",
             "--out", out, "--quiet"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        rows = sum(
            int(line.split()[-2].replace(",", ""))
            for line in done.stdout.splitlines()
            if line.endswith(" rows")
        )
        size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    # children run one after another, so the children's max RSS so far is this child's when sizes ascend
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "customers": customers,
        "rows": rows,
        "seconds": round(seconds, 1),
        "rows_per_second": int(rows / seconds),
        "peak_rss_mb": round(peak_mb),
        "output_mb": round(size / 2**20),
    }


def main(sizes: list[int]) -> None:
    path, data = open_results("generate")
    for n in sorted(sizes):
        result = measure(n)
        print(result)
        data["runs"][str(n)] = result
    path.write_text(json.dumps(data, indent=2) + "\n")
    lines = [
        "| customers | rows | seconds | rows/s | peak RSS (MB) | output (MB) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(data["runs"].values(), key=lambda r: r["customers"]):
        lines.append(
            f"| {r['customers']:,} | {r['rows']:,} | {r['seconds']} | {r['rows_per_second']:,} "
            f"| {r['peak_rss_mb']} | {r['output_mb']} |"
        )
    (RESULTS / "generate.md").write_text(
        "# Synthetic generator (CSV, default messiness)\n\n"
        + "\n".join(lines)
        + f"\n\nMachine: {data['machine']}\n"
    )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])

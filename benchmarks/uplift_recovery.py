"""How well the outcome stage recovers a planted retention effect, over 20 seeds.

Usage: python benchmarks/uplift_recovery.py [--customers 20000] [--seeds 20] [--control-share 0.1]

Each seed is a generated company whose retention list (a quarter of its customers, tiers 1:4:15, arms by the
pipeline's keyed hash) was worked with a known effect (seg_pipeline/synthetic/study.py). The pipeline's label
and estimator measure the intention-to-treat uplift per group; this records how often the 95 % interval
covered the planted uplift and excluded zero, with the default effects (0.5 / 0.3 / 0.15 of contacted
would-be churners kept) and with a large one (0.9 in every tier). Results: results/uplift_recovery.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from results_file import open_results  # noqa: E402

from seg_pipeline.synthetic.study import StudyCase, run_seed, summarize  # noqa: E402

CASES = {
    "default effects (0.5 / 0.3 / 0.15)": (),
    "large effect (0.9 every tier)": (
        ("personal_outreach", 0.9),
        ("semi_automated", 0.9),
        ("automated", 0.9),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--control-share", type=float, default=0.1)
    args = parser.parse_args()
    path, data = open_results("uplift_recovery")
    key = f"{args.customers}x{args.seeds}@{args.control_share:g}"
    result = {}
    started = time.perf_counter()
    for name, effects in CASES.items():
        case = StudyCase(customers=args.customers, control_share=args.control_share,
                         **({"effects": effects} if effects else {}))  # fmt: skip
        rows = pd.concat([run_seed(seed, case) for seed in range(args.seeds)], ignore_index=True)
        result[name] = summarize(rows).round(4).to_dict(orient="records")
        print(name)
        print(summarize(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    data["runs"][key] = {"customers": args.customers, "seeds": args.seeds, "control_share": args.control_share,
                         "seconds": round(time.perf_counter() - started, 1), "cases": result}  # fmt: skip
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.with_suffix(".md").write_text(_markdown(data))


def _markdown(data: dict) -> str:
    lines = ["# Uplift recovery (benchmarks/uplift_recovery.py)", "",
             "Intention-to-treat uplift per group against the planted uplift (truth/), 95 % Newcombe intervals.",
             "covered / excludes zero: seeds whose interval covered the planted uplift / lay above zero.", ""]  # fmt: skip
    for _key, run in sorted(data["runs"].items()):
        lines += [f"## {run['customers']:,} customers, {run['seeds']} seeds, control share {run['control_share']:g}",
                  f"({run['seconds']} s)", ""]  # fmt: skip
        for name, rows in run["cases"].items():
            lines += [f"### {name}", "", "| group | controls (mean) | planted | measured | covered | excludes zero |",
                      "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
            lines += [f"| {r['group']} | {r['control_customers']:.0f} | {r['planted_uplift']:+.3f} | "
                      f"{r['measured_uplift']:+.3f} | {r['covered']}/{r['seeds']} | {r['excludes_zero']}/{r['seeds']} |"
                      for r in rows]  # fmt: skip
            lines.append("")
    machine = data["machine"]
    lines.append(f"Machine: {machine['cpus']} CPUs, Python {machine['python']}, {machine['system']}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""BG/NBD cost at scale: building the purchase histories, fitting, and the per-customer features, on the
orders of the benchmark companies (the same cached companies as bench_pipeline.py), with lifetimes'
BetaGeoFitter on the same histories for comparison.

Usage: python benchmarks/bench_btyd.py N [N ...]   (results merged into benchmarks/results/btyd.*)
One feature build costs this once; the churn training set pays it once per snapshot (four by default).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
from bench_pipeline import AS_OF, company
from results_file import open_results

from seg_pipeline.features import btyd


def orders_of(customers: int) -> tuple[np.ndarray, pd.Series, int]:
    """Customer ids and order dates of the cached company (unparseable dates left out, as cleaning would)."""
    folder, _ = company(customers)
    table = pacsv.read_csv(
        folder / "orders.csv",
        convert_options=pacsv.ConvertOptions(include_columns=["customer_id", "order_date"],
                                             column_types={"customer_id": "string", "order_date": "string"}),
    )  # fmt: skip
    frame = table.to_pandas()
    dates = pd.to_datetime(frame["order_date"], errors="coerce", utc=True, format="mixed").dt.tz_localize(
        None
    )
    kept = dates.notna().to_numpy()
    return frame["customer_id"].to_numpy()[kept], dates[kept].reset_index(drop=True), len(frame)


def measure(customers: int) -> dict:
    ids, dates, rows = orders_of(customers)
    end = pd.Timestamp(AS_OF) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    started = time.perf_counter()
    histories = btyd.purchase_histories(ids, dates, end)
    history_s = time.perf_counter() - started
    started = time.perf_counter()
    fit = btyd.fit_bg_nbd(histories)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    btyd.btyd_features(ids, dates, end, 90)
    total_s = time.perf_counter() - started
    result = {
        "customers": customers, "order_rows": rows, "buyers": fit.customers, "repeat_buyers": fit.repeat_buyers,
        "fitted_on": fit.fitted_on, "params": fit.params.as_dict() if fit.params else None,
        "histories_s": round(history_s, 2), "fit_s": round(fit_s, 2), "features_total_s": round(total_s, 2),
    }  # fmt: skip
    from lifetimes import BetaGeoFitter  # the reference library (dev dependency)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        reference = BetaGeoFitter().fit(histories["x"], histories["t_x"], histories["T"])
        result["lifetimes_fit_s"] = round(time.perf_counter() - started, 2)
    result["lifetimes_params"] = {k: float(v) for k, v in reference.params_.items()}
    return result


def markdown(data: dict) -> str:
    lines = [
        "# BG/NBD cost (benchmarks/bench_btyd.py)",
        "",
        "Histories (x, t_x, T per buyer), the fit (ours: at most 200,000 sampled histories), the whole feature "
        "step, and lifetimes' BetaGeoFitter on every history, on the orders of the bench companies.",
        "",
        "| customers | order rows | buyers | histories s | fit s | features total s | lifetimes fit s "
        "| r / alpha / a / b (ours) | r / alpha / a / b (lifetimes) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in sorted(data["runs"].values(), key=lambda r: r["customers"]):
        ours = " / ".join(f"{v:.3f}" for v in (run["params"] or {}).values())
        theirs = " / ".join(f"{v:.3f}" for v in run["lifetimes_params"].values())
        lines.append(
            f"| {run['customers']:,} | {run['order_rows']:,} | {run['buyers']:,} | {run['histories_s']} | "
            f"{run['fit_s']} | {run['features_total_s']} | {run['lifetimes_fit_s']} | {ours} | {theirs} |"
        )
    lines += ["", f"Machine: {data['machine']}", ""]
    return "\n".join(lines)


def main(sizes: list[int]) -> None:
    path, data = open_results("btyd")
    for size in sorted(sizes):
        data["runs"][str(size)] = measure(size)
        print(json.dumps(data["runs"][str(size)]))
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(data))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000])

"""Pipeline scale benchmark: `full_refresh` then `rescore` on a fresh home for a company of N customers.

Usage: python benchmarks/bench_pipeline.py N [N ...]   (results merged into benchmarks/results/pipeline.*)
Companies are generated once (seed 42, as of 2024-06-30) and cached in benchmarks/cache/. Each run is a
`seg-pipeline run` child process: its wall time and peak resident memory (os.wait4) are measured alone,
and the time of every step comes from the Dagster instance's own step statistics.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from results_file import RESULTS, open_results

HERE = Path(__file__).parent
CACHE = HERE / "cache"
CLI = str(Path(sys.executable).parent / "seg-pipeline")
AS_OF = "2024-06-30"
CONFIG = """home: {home}
landing: {landing}
as_of: {as_of}
customer_attributes: {{numeric: [monthly_charges], categorical: [plan, contract]}}
"""


def company(customers: int) -> tuple[Path, int]:
    """The cached extracts of an N-customer company and their total rows."""
    out = CACHE / f"company_{customers}"
    summary = out / "rows.json"
    if not summary.exists():
        done = subprocess.run(
            [CLI, "generate", "--customers", str(customers), "--seed", "42", "--as-of", AS_OF, "--out", str(out)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = sum(
            int(line.split()[-2].replace(",", ""))
            for line in done.stdout.splitlines()
            if line.endswith(" rows")
        )
        summary.write_text(json.dumps({"rows": rows}))
    return out, json.loads(summary.read_text())["rows"]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def timed(command: list[str], env: dict, stdout: Path | None = None):
    """Wall seconds and peak RSS (MB) of one child process, and its RSS sampled every 0.2 s as
    (epoch seconds, MB) to tell which step holds the peak; what it prints goes to ``stdout`` if given."""
    samples: list[tuple[float, float]] = []
    with open(stdout, "wb") if stdout else contextlib.nullcontext(subprocess.DEVNULL) as printed:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=printed, stderr=subprocess.PIPE)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                rss = _rss_mb(child.pid)
                if rss is not None:
                    samples.append((time.time(), rss))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{child.stderr.read().decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, samples


def timed_run(config: Path, job: str, env: dict, *extra: str):
    return timed([CLI, "run", "--config", str(config), "--job", job, "--quiet", *extra], env)


def step_records(dagster_home: Path) -> list[dict[str, tuple[float, float]]]:
    """Per run on the instance (oldest first): step key -> (start, end) epoch seconds."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        records = sorted(instance.get_run_records(), key=lambda r: r.create_timestamp)
        return [
            {s.step_key: (s.start_time, s.end_time) for s in instance.get_run_step_stats(r.dagster_run.run_id)
             if s.start_time and s.end_time}
            for r in records
        ]  # fmt: skip


def full_refresh_io(dagster_home: Path) -> dict[str, dict[str, float]]:
    """Of the instance's first run (the full refresh), per step: seconds spent loading its inputs from the
    warehouse or the handoff (from the step's start to its last loaded input) and handing its outputs to
    the warehouse (from each output to its "handled" event), from the event log's own timestamps."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(dagster_home)
    started, loaded, output, writes = {}, {}, {}, {}
    with dg.DagsterInstance.get() as instance:
        first = min(instance.get_run_records(), key=lambda r: r.create_timestamp)
        for entry in instance.all_logs(first.dagster_run.run_id):
            kind = entry.dagster_event.event_type_value if entry.dagster_event else None
            if kind == "STEP_START":
                started[entry.step_key] = entry.timestamp
            elif kind == "LOADED_INPUT":
                loaded[entry.step_key] = entry.timestamp
            elif kind == "STEP_OUTPUT":
                output[entry.step_key] = entry.timestamp
            elif kind == "HANDLED_OUTPUT" and entry.step_key in output:
                writes[entry.step_key] = (
                    writes.get(entry.step_key, 0.0) + entry.timestamp - output.pop(entry.step_key)
                )
    return {
        step: {"read_s": round(loaded[step] - started[step], 2) if step in loaded else 0.0,
               "write_s": round(writes.get(step, 0.0), 2)}
        for step in started
    }  # fmt: skip


def io_totals(step_io: dict[str, dict[str, float]]) -> dict[str, float]:
    return {kind: round(sum(step[kind] for step in step_io.values()), 1) for kind in ("read_s", "write_s")}


def step_peaks(steps: dict[str, tuple[float, float]], samples: list[tuple[float, float]]) -> dict[str, int]:
    """The highest sampled RSS (MB) of the process while each step ran."""
    peaks = {}
    for step, (start, end) in steps.items():
        inside = [mb for t, mb in samples if start <= t <= end]
        if inside:
            peaks[step] = round(max(inside))
    return peaks


def cpu_probe() -> dict[str, float]:
    """Seconds for a fixed pure-Python loop and a fixed numpy sort: how fast the machine was around a
    measurement (on shared machines it varies by 2x and more within an hour)."""
    import numpy as np

    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    loop = time.perf_counter() - started
    values = np.random.default_rng(0).random(10**7)  # generated in place: its pages are touched before timing
    started = time.perf_counter()
    values.sort()
    return {"python_loop_s": round(loop, 3), "numpy_sort_s": round(time.perf_counter() - started, 3)}


def measure(customers: int) -> dict:
    landing, rows = company(customers)
    probe_before = cpu_probe()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        config = Path(tmp) / "bench.yaml"
        config.write_text(CONFIG.format(home=home, landing=landing, as_of=AS_OF))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEG_") and k != "DAGSTER_HOME"}
        env["SEG_PSEUDO_KEY"] = "benchmark-key"
        full_s, full_mb, full_samples = timed_run(config, "full_refresh", env)
        rescore_s, rescore_mb, _ = timed_run(config, "rescore", env)
        # every source ingested and validated again, as when all extracts changed since the last run
        reingest_s, reingest_mb, _ = timed_run(config, "rescore", env, "--reingest")
        full_records, rescore_records, reingest_records = step_records(home / "dagster")
        full_step_io = full_refresh_io(home / "dagster")
        full_io = io_totals(full_step_io)
        full_steps, rescore_steps, reingest_steps = (
            {k: round(end - start, 2) for k, (start, end) in run.items()}
            for run in (full_records, rescore_records, reingest_records)
        )
        # the same asset and check functions called directly, on a fresh home (direct_run.py)
        direct_config = Path(tmp) / "direct.yaml"
        direct_config.write_text(CONFIG.format(home=Path(tmp) / "direct_home", landing=landing, as_of=AS_OF))
        direct_out = Path(tmp) / "direct.json"
        direct_s, direct_mb, _ = timed(
            [sys.executable, str(HERE / "direct_run.py"), str(direct_config)], env, stdout=direct_out
        )
        direct = json.loads(direct_out.read_text().splitlines()[-1])
        direct_steps = direct["steps"]
        # handing tables on with the job's read-back dtypes is IO-manager work: not part of the direct run
        direct_s -= direct["conversion_seconds"]
    busy = sum(full_steps.values())
    return {
        "customers": customers,
        "rows": rows,
        "cpu_probe": {"before": probe_before, "after": cpu_probe()},
        "full_refresh": {
            "seconds": round(full_s, 1),
            "peak_rss_mb": round(full_mb),
            "rows_per_second": int(rows / full_s),
            "steps": full_steps,
            "step_peak_rss_mb": step_peaks(full_records, full_samples),
            "step_io": full_step_io,
        },  # fmt: skip
        # unchanged extracts: the validated clean tables are reused (seg_pipeline/reuse.py)
        "rescore": {"seconds": round(rescore_s, 1), "peak_rss_mb": round(rescore_mb), "steps": rescore_steps},
        "rescore_share_of_full": round(rescore_s / full_s, 3),
        "rescore_reingest": {
            "seconds": round(reingest_s, 1),
            "peak_rss_mb": round(reingest_mb),
            "steps": reingest_steps,
        },  # fmt: skip
        "rescore_reingest_share_of_full": round(reingest_s / full_s, 3),
        "direct": {
            "seconds": round(direct_s, 1),
            "peak_rss_mb": round(direct_mb),
            "steps": direct_steps,
            "conversion_seconds_left_out": direct["conversion_seconds"],
        },  # fmt: skip
        # the Dagster job's wall time over the same functions called directly in one process
        "dagster_overhead": round(full_s / direct_s, 3),
        # what the difference is made of: the warehouse IO manager's share of the steps (conversion, queueing and
        # waiting for background writes; handoff copies and reads; the direct run stores nothing), and the rest
        # (event log, step start-up)
        "overhead_parts": {
            "warehouse_write_s": full_io["write_s"],
            "warehouse_read_s": full_io["read_s"],
            "other_s": round(full_s - direct_s - full_io["write_s"] - full_io["read_s"], 1),
            "overhead_without_warehouse_io": round(
                (full_s - full_io["write_s"] - full_io["read_s"]) / direct_s, 3
            ),
        },
        # wall time of the CLI process over the time Dagster records inside steps: process start-up, code
        # location load, event log and IO-manager writes between steps
        "outside_steps_ratio": round(full_s / busy, 3) if busy else None,
    }


def _direct(run: dict, what: str) -> str:
    """Runs recorded before the direct comparison existed show a dash."""
    if "direct" not in run:
        return "-"
    return str(run["direct"]["seconds"] if what == "seconds" else run["dagster_overhead"])


def exponent(sizes: list[int], values: list[float]) -> float:
    """b in value ~ a * size^b, least squares on the logs."""
    import numpy as np

    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def growth(runs: list[dict]) -> str:
    sizes = [r["customers"] for r in runs]
    seconds = exponent(sizes, [r["full_refresh"]["seconds"] for r in runs])
    memory = exponent(sizes, [r["full_refresh"]["peak_rss_mb"] for r in runs])
    return (
        f"Growth from {sizes[0]:,} to {sizes[-1]:,} customers (fitted exponent b in time ~ N^b; 1 is linear): "
        f"full-refresh time b = {seconds:.2f}, peak memory b = {memory:.2f}."
    )


def _reingest(run: dict) -> str:
    """Runs recorded before rescore reused ingestion show a dash."""
    if "rescore_reingest" not in run:
        return "- | -"
    return f"{run['rescore_reingest']['seconds']} | {run['rescore_reingest_share_of_full']}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    """A markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]  # fmt: skip


def markdown(data: dict) -> str:
    runs = [data["runs"][k] for k in sorted(data["runs"], key=int)]
    lines = [
        "# Pipeline benchmark", "",
        f"Machine: {data['machine']['cpus']} CPUs, Python {data['machine']['python']}, {data['machine']['system']}.",
        f"Reproduce: `make bench SIZE=\"{' '.join(str(r['customers']) for r in runs)}\"`.", "",
        "rescore: the same extracts scored again, so every source's validated clean tables are reused; "
        "rescore, re-ingest: `--reingest`, every source read, cleaned and validated again (as when every "
        "extract changed).", "",
    ]  # fmt: skip
    lines += _table(
        ["customers", "input rows", "full refresh s", "peak RSS MB", "rows/s", "rescore s", "rescore / full",
         "rescore, re-ingest s", "re-ingest / full", "direct s", "Dagster overhead"],
        [[f"{r['customers']:,}", f"{r['rows']:,}", r["full_refresh"]["seconds"], f"{r['full_refresh']['peak_rss_mb']:,}",
          f"{r['full_refresh']['rows_per_second']:,}", r["rescore"]["seconds"], r["rescore_share_of_full"],
          _reingest(r), _direct(r, "seconds"), _direct(r, "overhead")] for r in runs],
    )  # fmt: skip
    if len(runs) >= 2:
        lines += ["", growth(runs)]
    probed = [r for r in runs if "cpu_probe" in r]
    if probed:
        lines += ["", "Machine speed around each size (`cpu_probe`: a fixed Python loop and a fixed numpy sort, "
                  "seconds, before the full refresh and after the direct run; lower is faster):", ""]  # fmt: skip
        lines += [f"- {r['customers']:,}: " + "; ".join(
            f"{when} loop {p['python_loop_s']}, sort {p['numpy_sort_s']}" for when, p in r["cpu_probe"].items())
            for r in probed]  # fmt: skip
    parts = [r for r in runs if "overhead_parts" in r]
    if parts:
        lines += [
            "", "Where the Dagster overhead goes (full refresh minus the direct run, seconds; the direct run hands "
            "frames over in memory, converted to the dtypes the job's steps read, that conversion not timed, and "
            "writes no table). Warehouse writes: from a step's output to its "
            "handled event (converting the frame, queueing its background write, waiting when the queue is "
            "full or nothing later reads it); reads: from a step's start to its last loaded input (handoff "
            "copies, tables of earlier runs):", "",
        ]  # fmt: skip
        lines += _table(
            ["customers", "full refresh s", "direct s", "warehouse writes s", "warehouse reads s", "other s",
             "overhead without warehouse IO"],
            [[f"{r['customers']:,}", r["full_refresh"]["seconds"], r["direct"]["seconds"],
              *(r["overhead_parts"][k] for k in ("warehouse_write_s", "warehouse_read_s", "other_s",
                                                 "overhead_without_warehouse_io"))] for r in parts],
        )  # fmt: skip
        lines += [
            "",
            "Steps that cost most more in the job than called directly (job step - direct call, seconds; "
            "with the step's own warehouse reads and writes, then without them):",
            "",
        ]
        for r in parts:
            direct, io = r["direct"]["steps"], r["full_refresh"].get("step_io", {})
            extra = {k: v - direct[k] for k, v in r["full_refresh"]["steps"].items() if k in direct}
            top = sorted(extra.items(), key=lambda kv: -kv[1])[:8]
            lines.append(f"- {r['customers']:,}: " + ", ".join(f"{k} +{v:.2f}" for k, v in top))
            if io:
                computing = {k: v - io.get(k, {}).get("read_s", 0) - io.get(k, {}).get("write_s", 0)
                             for k, v in extra.items()}  # fmt: skip
                top = sorted(computing.items(), key=lambda kv: -kv[1])[:8]
                lines.append("  - without its IO: " + ", ".join(f"{k} {v:+.2f}" for k, v in top))
    lines += ["", "Slowest steps of the full refresh (seconds):", ""]
    for r in runs:
        top = sorted(r["full_refresh"]["steps"].items(), key=lambda kv: -kv[1])[:8]
        lines.append(f"- {r['customers']:,}: " + ", ".join(f"{k} {v}" for k, v in top))
    peaks = [r for r in runs if r["full_refresh"].get("step_peak_rss_mb")]
    if peaks:
        lines += [
            "",
            "Steps during which the full refresh's process was largest (peak RSS MB, sampled every 0.2 s):",
            "",
        ]
        for r in peaks:
            top = sorted(r["full_refresh"]["step_peak_rss_mb"].items(), key=lambda kv: -kv[1])[:6]
            lines.append(f"- {r['customers']:,}: " + ", ".join(f"{k} {v:,}" for k, v in top))
    return "\n".join(lines) + "\n"


def main(sizes: list[int]) -> None:
    CACHE.mkdir(exist_ok=True)
    path, data = open_results("pipeline")
    for n in sorted(sizes):
        result = measure(n)
        data["runs"][str(n)] = result
        print(json.dumps({k: v for k, v in result.items() if k not in ("full_refresh", "rescore", "rescore_reingest")}
                         | {"full_s": result["full_refresh"]["seconds"], "rescore_s": result["rescore"]["seconds"]}))  # fmt: skip
        path.write_text(json.dumps(data, indent=2) + "\n")
        (RESULTS / "pipeline.md").write_text(markdown(data))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000])

"""The `seg-pipeline` command: generate demo data, run the pipeline on the Dagster instance, show runs."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

from seg_pipeline.config import CONFIG_ENV, Settings, load_settings
from seg_pipeline.errors import SegPipelineError

UI_HOST = "127.0.0.1"
UI_PORT = 3000


def _settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="YAML config file (default: $SEG_CONFIG, else defaults)"
    )
    parser.add_argument("--home", metavar="DIR", help="override config key home")
    parser.add_argument("--as-of", metavar="DATE", help="override config key as_of (YYYY-MM-DD)")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override any config key, e.g. segmentation.k_max=8",
    )


def _resolve_settings(args: argparse.Namespace, check_files: bool = False) -> Settings:
    """Validate the CLI's view of the config, then export it as env vars so the code location sees the same."""
    overrides = list(args.set)
    if args.home:
        overrides.append(f"home={Path(args.home).resolve()}")
    if args.as_of:
        overrides.append(f"as_of={args.as_of}")
    settings = load_settings(args.config, overrides, check_files=check_files)
    if args.config:
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    for item in overrides:  # already validated by load_settings
        key, _, value = item.partition("=")
        os.environ["SEG_" + key.strip().upper().replace(".", "__")] = value
    return settings


# --- commands ---------------------------------------------------------------------------------------


def cmd_generate(args: argparse.Namespace) -> int:
    from seg_pipeline.synthetic.generator import GeneratorConfig, MessinessRates, generate

    settings = _resolve_settings(args)
    rates = MessinessRates().scaled(args.messiness)
    overrides = {}
    for item in args.rate:
        name, _, value = item.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            raise SegPipelineError(
                f"--rate {item!r}: expected NAME=NUMBER, e.g. duplicate_customers=0.05"
            ) from None
    try:
        rates = rates.with_overrides(overrides)
    except ValueError as exc:
        raise SegPipelineError(f"--rate: {exc}") from None
    if args.customers < 1:
        raise SegPipelineError("--customers must be at least 1")
    as_of = settings.as_of or dt.datetime.now(dt.UTC).date()
    out = Path(args.out).resolve() if args.out else settings.landing_dir
    config = GeneratorConfig(
        customers=args.customers,
        seed=args.seed,
        as_of=as_of,
        format=args.format,
        history_days=args.history_days,
        rates=rates,
    )
    show = sys.stderr.isatty() and not args.quiet

    def progress(done: int, total: int) -> None:
        if show:
            print(f"\r  customers {done:,}/{total:,}", end="", file=sys.stderr, flush=True)

    summary = generate(config, out, progress=progress)
    if show:
        print(file=sys.stderr)
    print(f"Generated {args.customers:,} customers (seed {args.seed}, as of {as_of}) in {out}")
    for name, rows in summary.rows.items():
        print(f"  {summary.files[name].name:<24} {rows:>12,} rows")
    print("  truth/ (planted segments, churn dates, duplicates, anomalies; never read by the pipeline)")
    return 0


def _demo_key_notice(settings: Settings) -> None:
    from seg_pipeline.cleaning.privacy import ensure_demo_key

    env_var = settings.privacy.pseudonymization_key_env
    created = ensure_demo_key(env_var, settings.home)
    if created:
        print(
            f"Created a demo pseudonymization key at {created} (no {env_var} set). "
            f"In production set {env_var} to a secret of your own; changing it re-keys every customer.",
            file=sys.stderr,
        )


def cmd_run(args: argparse.Namespace) -> int:
    from seg_pipeline.runner import execute, prepare_dagster_home

    settings = _resolve_settings(args, check_files=True)
    _demo_key_notice(settings)
    dagster_home = prepare_dagster_home(settings.dagster_home)
    if not args.quiet:
        print(f"Running {args.job} on the Dagster instance in {dagster_home} ...")
    outcome = execute(args.job, log_level="DEBUG" if args.verbose else "CRITICAL")
    width = max((len(s.step) for s in outcome.steps), default=10)
    if not args.quiet:
        marks = {"succeeded": "ok  ", "failed": "FAIL", "skipped": "skip", "started": "??  "}
        for step in outcome.steps:
            rows = f"{step.rows:>10,} rows" if step.rows is not None else " " * 15
            secs = f"{step.seconds:6.1f}s" if step.seconds is not None else ""
            notes = f"  ({'; '.join(step.notes)})" if step.notes else ""
            print(f"  {marks.get(step.status, step.status)} {step.step:<{width}} {rows} {secs}{notes}")
    if not outcome.success:
        print(f"\nRun {outcome.run_id} FAILED: {outcome.failure_reason}", file=sys.stderr)
        print(f"Details: `make dev`, then http://{UI_HOST}:{UI_PORT}/runs/{outcome.run_id}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"\nRun {outcome.run_id} succeeded.")
        quarantined = next((s.rows for s in outcome.steps if s.step == "quarantine"), None)
        print(f"  tables:   {settings.warehouse_path} (DuckDB; published tables in schema published)")
        if quarantined is not None:
            print(f"  quarantine: {quarantined:,} rows with their reasons in clean.quarantine")
        print(f"  Data Docs: {settings.datadocs_dir / 'index.html'} (GX results of every gate, per run)")
        for step in outcome.steps:
            for label, url in step.links.items():
                hint = (
                    f"{step.step}; `make mlflow` serves the MLflow UI"
                    if label.startswith("MLflow")
                    else step.step
                )
                print(f"  {label}: {url} ({hint})")
        print(f"  runs:     {dagster_home} (Dagster instance; `seg-pipeline status` lists them)")
        print(
            f"  UI:       `make dev` (or `seg-pipeline dev`), then http://{UI_HOST}:{UI_PORT}/runs/{outcome.run_id}"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from seg_pipeline.automation import read_alerts
    from seg_pipeline.runner import prepare_dagster_home, recent_runs

    settings = _resolve_settings(args)
    dagster_home = prepare_dagster_home(settings.dagster_home)
    runs = recent_runs(args.limit)
    if not runs:
        print(f"No runs yet on the instance in {dagster_home}. Start one with `seg-pipeline run`.")
        return 0
    print(f"Recent runs on the instance in {dagster_home}:")
    print(f"  {'run id':<36}  {'job':<14} {'status':<10} {'started (UTC)':<19} {'seconds':>8}")
    for run in runs:
        started = run.started.strftime("%Y-%m-%d %H:%M:%S") if run.started else "-"
        seconds = f"{run.seconds:8.1f}" if run.seconds is not None else "       -"
        print(f"  {run.run_id:<36}  {run.job:<14} {run.status:<10} {started:<19} {seconds}")
        if run.failure:
            print(f"      failed at {run.failure}")
    alerts = read_alerts(settings, 5)
    if alerts:
        print(f"Recent alerts ({settings.alerts_path}):")
        for alert in alerts:
            steps = "; ".join(f"{s['step']}: {s['error']}" for s in alert["failed_steps"]) or alert["message"]
            print(
                f"  {alert['recorded_at']}  {alert['job']} run {alert['run_id']} ({alert['trigger']}): {steps}"
            )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seg_pipeline.publish.contract import PUBLISHED_TABLES
    from seg_pipeline.publish.writers import read_postgres_table, read_warehouse_table

    settings = _resolve_settings(args)
    if args.table not in PUBLISHED_TABLES:
        raise SegPipelineError(
            f"unknown table {args.table!r}; published tables: {', '.join(PUBLISHED_TABLES)}"
        )
    if args.source == "postgres":
        dsn = settings.publish_dsn
        if dsn is None:
            raise SegPipelineError(
                "--from postgres: no DSN configured (set SEG_PUBLISH_DSN or publish.postgres_dsn)"
            )
        frame = read_postgres_table(dsn, settings.publish.postgres_schema, args.table)
        where = f"PostgreSQL schema {settings.publish.postgres_schema}"
    else:
        frame = read_warehouse_table(settings.warehouse_path, args.table)
        where = f"the warehouse {settings.warehouse_path}"
    if frame is None:
        raise SegPipelineError(
            f"{args.table} has not been published to {where} yet; run `seg-pipeline run` first"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, date_format="%Y-%m-%d")
    print(f"Wrote {len(frame):,} rows of {args.table} from {where} to {out}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from seg_pipeline.cleaning.privacy import erasure_file, record_erasure, resolve_key

    settings = _resolve_settings(args)
    _demo_key_notice(settings)
    key = resolve_key(settings.privacy.pseudonymization_key_env, settings.home)
    added = record_erasure(settings.home, args.customer_id, key)
    state = "Recorded" if added else "Already recorded:"
    print(
        f"{state} erasure request for customer {args.customer_id} in {erasure_file(settings.home)} "
        "(stored pseudonymized). Every run applies all requests before the features: the customer, their "
        "duplicate records and their events disappear from every downstream table at the next run."
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from seg_pipeline.cleaning.privacy import erasure_keys, pseudonymize, resolve_key
    from seg_pipeline.explain import explain

    settings = _resolve_settings(args)
    key = resolve_key(settings.privacy.pseudonymization_key_env, settings.home)
    member = pseudonymize(pd.Series([args.customer_id]), key).iloc[0]
    result = explain(settings.warehouse_path, args.customer_id, erased=member in erasure_keys(settings.home))
    if args.json:
        print(
            json.dumps(
                {"customer_id": result.customer_id, "found": result.found, **result.sections}, indent=2
            )
        )
    else:
        print(result.text())
    return 0 if result.found or "Erasure" in result.sections else 1


def cmd_dev(args: argparse.Namespace) -> int:
    from seg_pipeline.runner import prepare_dagster_home

    settings = _resolve_settings(args)
    _demo_key_notice(settings)
    prepare_dagster_home(settings.dagster_home)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    workspace = Path(args.workspace).resolve()
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return subprocess.call(
        [dagster, "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)], env=os.environ.copy()
    )


# --- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seg-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic company (five extracts + truth/)")
    _settings_args(gen)
    gen.add_argument("--customers", type=int, default=20_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", metavar="DIR", help="output folder (default: the config's landing folder)")
    gen.add_argument("--format", choices=("csv", "parquet"), default="csv")
    gen.add_argument("--history-days", type=int, default=730)
    gen.add_argument(
        "--messiness", type=float, default=1.0, help="multiply every messiness rate (0 = clean data)"
    )
    gen.add_argument(
        "--rate", metavar="NAME=VALUE", action="append", default=[], help="set one messiness rate"
    )
    gen.add_argument("--quiet", action="store_true")
    gen.set_defaults(func=cmd_generate)

    run = sub.add_parser("run", help="execute the pipeline on the Dagster instance in $DAGSTER_HOME")
    _settings_args(run)
    run.add_argument(
        "--job",
        default="full_refresh",
        choices=("full_refresh", "rescore"),
        help="full_refresh: everything; rescore: fresh features scored by the champion, no training",
    )
    run.add_argument("--quiet", action="store_true", help="print only errors")
    run.add_argument("--verbose", action="store_true", help="also print Dagster's event log with tracebacks")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="list recent runs and their outcome")
    _settings_args(status)
    status.add_argument("--limit", type=int, default=10)
    status.set_defaults(func=cmd_status)

    export = sub.add_parser("export", help="write a published table to a CSV file")
    _settings_args(export)
    export.add_argument("table", help="customer_segments, churn_scores, segment_profiles or segment_history")
    export.add_argument("--out", metavar="FILE.csv", required=True)
    export.add_argument(
        "--from", dest="source", choices=("warehouse", "postgres"), default="warehouse",
        help="the store to read (default: the warehouse, which every publish writes)",
    )  # fmt: skip
    export.set_defaults(func=cmd_export)

    explain_cmd = sub.add_parser(
        "explain", help="a customer's segment, lifecycle stage, churn risk and drivers, consent, in words"
    )
    _settings_args(explain_cmd)
    explain_cmd.add_argument("customer_id", help="the CRM's customer id")
    explain_cmd.add_argument("--json", action="store_true", help="the same as JSON")
    explain_cmd.set_defaults(func=cmd_explain)

    forget = sub.add_parser("forget", help="record an erasure request; every run honours all of them")
    _settings_args(forget)
    forget.add_argument("customer_id", help="the CRM's customer id")
    forget.set_defaults(func=cmd_forget)

    dev = sub.add_parser("dev", help="start the Dagster UI on localhost for this config's instance")
    _settings_args(dev)
    dev.add_argument("--host", default=UI_HOST)
    dev.add_argument("--port", type=int, default=UI_PORT)
    dev.add_argument("--workspace", default="workspace.yaml")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SegPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

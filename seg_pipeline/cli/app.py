"""The `seg-pipeline` command: generate demo data, run the pipeline on the Dagster instance, show runs."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from seg_pipeline.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UI_HOST,
    UI_PORT,
    Progress,
    StepPrinter,
    failure_summary,
    report_error,
    statement_dumps_left_out,
    storage_failure,
    success_summary,
)
from seg_pipeline.config import CONFIG_ENV, Settings, load_settings, unknown_env_vars
from seg_pipeline.errors import (
    SegPipelineError,
)
from seg_pipeline.links import datadocs_url, report_url
from seg_pipeline.platform.docs_server import DocsServer, settings_roots
from seg_pipeline.redact import redact

if TYPE_CHECKING:
    from seg_pipeline.synthetic.generator import MessinessRates


EXIT_CODES = """\
exit codes:
  0    success
  1    the run failed (a step or a quality gate; the reason is printed), `explain` found no such customer,
       or `status` found the published stores disagreeing (a publish stopped between its two commits)
  2    a problem to fix on your side: usage, configuration, a missing file, PostgreSQL not reachable,
       the warehouse locked by another process, a read-only home or a full disk (also when it stops a
       run); a line "what to do:" follows the error
  3    an unexpected error (a bug): rerun with --verbose for the traceback
  130  interrupted (Ctrl-C or SIGTERM): the run stops before its next step and is marked canceled

--verbose (before or after the command) adds the traceback to any error; on `run` it also prints
Dagster's event log. --quiet: `run` prints errors only, `generate` no progress (only its summary)."""

CONFIG_HINT = (
    "fix the setting where it comes from (the --config file or $SEG_CONFIG, a SEG_* environment variable, "
    "or --set); the README's Configuration section lists every key with its default"
)


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
    """Validate the CLI's view of the config; ``args.settings_source`` keeps where it came from, for the run
    (as run config) and for `seg-pipeline dev`'s code location (as environment variables of its process)."""
    from seg_pipeline.cli.launch import SettingsSource
    from seg_pipeline.platform.settings import check_schedule

    overrides = list(args.set)
    if args.home:
        overrides.append(f"home={Path(args.home).resolve()}")
    if args.as_of:
        overrides.append(f"as_of={args.as_of}")
    try:
        settings = load_settings(args.config, overrides)
        check_schedule(settings)
    except SegPipelineError as exc:
        exc.hint = exc.hint or CONFIG_HINT
        raise
    args.resolved_home = settings.home  # named by errors about the disk
    for warning in unknown_env_vars(os.environ, settings):
        print(f"warning: {warning}", file=sys.stderr)
    if check_files:
        settings.check_sources()  # its messages say what to do
    pairs = (item.partition("=") for item in overrides)  # already validated by load_settings
    args.settings_source = SettingsSource(
        config_file=str(Path(args.config).resolve()) if args.config else None,
        overrides={key.strip(): value for key, _, value in pairs},
    )
    return settings


def settings_environment(source) -> dict[str, str]:
    """The environment variables that give a code location started by this command the same settings."""
    env = {"SEG_" + key.upper().replace(".", "__"): value for key, value in source.overrides.items()}
    if source.config_file:
        env[CONFIG_ENV] = source.config_file
    return env


def cmd_generate(args: argparse.Namespace) -> int:
    from seg_pipeline.synthetic.generator import GeneratorConfig, MessinessRates, generate

    settings = _resolve_settings(args)
    cohort = args.scenario == "cohort"
    # the demo is messy unless told otherwise; the cohort scenario is clean unless told otherwise
    messiness = args.messiness if args.messiness is not None else (0.0 if cohort else 1.0)
    rates = MessinessRates().scaled(messiness)
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
    if cohort:
        return _generate_cohort(args, as_of, out, rates, set(overrides))
    history = {"history_days": args.history_days} if args.history_days is not None else {}
    config = GeneratorConfig(
        customers=args.customers, seed=args.seed, as_of=as_of, format=args.format, rates=rates, **history
    )
    if args.campaign_effect and not args.campaign:
        raise SegPipelineError("--campaign-effect sets an effect of --campaign; add --campaign")
    campaign = _campaign_plan(settings, args.campaign_effect) if args.campaign else None
    progress = Progress("customers", quiet=args.quiet)
    try:
        summary = generate(config, out, progress=progress, campaign=campaign)
    except ValueError as exc:  # a plan that does not fit this company (another seed, size or as_of)
        if campaign is None:
            raise
        raise SegPipelineError(f"--campaign: {exc}",
                               hint="pass the --customers, --seed and --as-of the company was generated with") from None  # fmt: skip
    progress.close()
    print(f"Generated {args.customers:,} customers (seed {args.seed}, as of {as_of}) in {out}")
    for name, rows in summary.rows.items():
        print(f"  {summary.files[name].name:<24} {rows:>12,} rows")
    print("  truth/ (planted segments, churn dates, duplicates, anomalies; never read by the pipeline)")
    if campaign is not None:
        import json

        planted = json.loads((out / "truth" / "manifest.json").read_text(encoding="utf-8"))["campaign"]
        print(f"  campaign: the retention list of {campaign.date} worked; planted uplift per tier (truth/"
              "campaign.csv): " + ", ".join(f"{tier} {_points(row.get('planted_uplift'))}"
                                             for tier, row in planted["tiers"].items()))  # fmt: skip
    return 0


def _points(value) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f} points"


def _campaign_plan(settings: Settings, effects: list[str]):
    """The last published retention list, with arms, as the plan the generator works (generate --campaign)."""
    import pandas as pd

    from seg_pipeline.publish.stores import read_warehouse_table
    from seg_pipeline.synthetic.campaign import DEFAULT_EFFECTS, CampaignPlan

    actions = read_warehouse_table(settings.warehouse_path, "retention_actions")
    if actions is None or actions.empty:
        raise SegPipelineError(
            f"--campaign works the last published retention list, and the warehouse {settings.warehouse_path} "
            "has none", hint="run `seg-pipeline run --as-of <an earlier date>` first",
        )  # fmt: skip
    chosen = dict(DEFAULT_EFFECTS)
    for item in effects:
        tier, _, value = item.partition("=")
        if tier.strip() not in chosen:
            raise SegPipelineError(f"--campaign-effect {item!r}: tiers are {', '.join(chosen)}")
        try:
            chosen[tier.strip()] = float(value)
        except ValueError:
            raise SegPipelineError(
                f"--campaign-effect {item!r}: expected TIER=SHARE, e.g. automated=0.2"
            ) from None
    assignments = actions.rename(columns={"risk_tier": "tier"})[["customer_id", "tier", "arm"]]
    try:
        return CampaignPlan(date=pd.Timestamp(actions["as_of"].iloc[0]).date(), assignments=assignments,
                            horizon_days=settings.churn.horizon_days, effects=chosen)  # fmt: skip
    except ValueError as exc:
        raise SegPipelineError(f"--campaign: {exc}") from None


def _generate_cohort(
    args: argparse.Namespace, as_of: dt.date, out: Path, rates: MessinessRates, overridden: set[str]
) -> int:
    from seg_pipeline.synthetic.cohort import (
        DEFAULT_HISTORY_DAYS,
        HONOURED_RATES,
        MIN_HISTORY_DAYS,
        CohortConfig,
        generate_cohort,
    )

    ignored = sorted(overridden - set(HONOURED_RATES))
    if ignored:
        raise SegPipelineError(
            f"--rate {ignored[0]}: the cohort scenario has no such problem to inject",
            hint=f"set only {', '.join(HONOURED_RATES)} for --scenario cohort, or drop --rate",
        )
    history_days = args.history_days if args.history_days is not None else DEFAULT_HISTORY_DAYS
    if history_days < MIN_HISTORY_DAYS:
        raise SegPipelineError(
            f"--history-days {history_days}: the cohort scenario needs at least {MIN_HISTORY_DAYS} days "
            "(its 91-day acquisition quarter starts that many days before --as-of, and a few weeks of "
            "buying must follow it)",
            hint=f"pass --history-days {MIN_HISTORY_DAYS} or more, or leave it out (default "
            f"{DEFAULT_HISTORY_DAYS})",
        )
    config = CohortConfig(
        customers=args.customers,
        seed=args.seed,
        as_of=as_of,
        format=args.format,
        history_days=history_days,
        rates=rates,
    )
    progress = Progress("customers", quiet=args.quiet)
    summary = generate_cohort(config, out, progress=progress)
    progress.close()
    print(f"Generated a cohort of {args.customers:,} customers (seed {args.seed}, as of {as_of}) in {out}")
    print(
        f"  acquired {summary.cohort_start} .. {summary.cohort_end}; by {as_of}: "
        f"{summary.one_order_share:.1%} bought once, {summary.at_most_two_share:.1%} at most twice"
    )
    for name, rows in summary.rows.items():
        print(f"  {summary.files[name].name:<24} {rows:>12,} rows")
    if summary.anomalies:
        print(f"  injected problems: {sum(summary.anomalies.values()):,} (listed in truth/anomalies.csv)")
    print("  truth/ (never read by the pipeline): customers.csv (purchase rate, dropout probability, death)")
    print(f"         orders_after_as_of.csv ({summary.future_orders:,} orders in the 365 days after {as_of})")
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
    from seg_pipeline.cli.launch import home_lock
    from seg_pipeline.sources.landing import wait_for_stable_extracts, waiting_line

    if args.reingest and args.job != "rescore":
        raise SegPipelineError("--reingest is for --job rescore; a full_refresh ingests every source anyway")
    settings = _resolve_settings(args, check_files=True)
    # an extract still being copied would be read half-written (--quiet: errors only, so wait silently)
    announce = None if args.quiet else (lambda files: print(waiting_line(files), file=sys.stderr, flush=True))
    wait_for_stable_extracts(settings, announce)

    def waiting(holder: str) -> None:
        print(
            f"Waiting for the run in progress on {settings.home} to finish: {holder}",
            file=sys.stderr,
            flush=True,
        )

    with home_lock(settings.home, on_wait=waiting):
        return _run_locked(args, settings)


def _run_locked(args: argparse.Namespace, settings: Settings) -> int:
    from seg_pipeline.cli.launch import execute, prepare_dagster_home

    _demo_key_notice(settings)
    dagster_home = prepare_dagster_home(settings.dagster_home)
    _close_abandoned_runs(settings, quiet=args.quiet)
    _resolve_pending_publish(settings, quiet=args.quiet)
    _prepare_tracking_store(settings)
    if not args.quiet:
        print(f"Running {args.job} on the Dagster instance in {dagster_home} ...", flush=True)
    started = time.monotonic()
    left_out, tags, as_of = _reused_ingestion(args, settings)
    source = args.settings_source
    if as_of is not None:  # the date the reused clean tables were cleaned for, also past midnight
        source = replace(source, overrides={**source.overrides, "as_of": as_of.isoformat()})
    with statement_dumps_left_out(args.verbose):
        outcome = execute(
            args.job,
            source,
            tags=tags,
            log_level="DEBUG" if args.verbose else "CRITICAL",
            listener=None if args.quiet else StepPrinter(),
            left_out=left_out,
        )
    seconds = time.monotonic() - started
    if not args.quiet and outcome.not_run:
        count = len(outcome.not_run)
        print(f"  not run: {count} step{'s' if count != 1 else ''} downstream of the failure")
    if outcome.interrupted:
        print(
            f"\ninterrupted: run {outcome.run_id} stopped; nothing after the interrupted step ran "
            "(`seg-pipeline status` shows it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not outcome.success:
        print("\n" + redact("\n".join(failure_summary(outcome, settings))), file=sys.stderr)
        return EXIT_USAGE if storage_failure(outcome) else EXIT_FAILED
    if not args.quiet:
        print("\n" + redact("\n".join(success_summary(outcome, settings, dagster_home, seconds))))
    return EXIT_OK


def _reused_ingestion(args: argparse.Namespace, settings: Settings):
    """For a rescore: the assets of sources whose last ingestion is reused, the run's tags and the as_of the
    plan was made for (None when nothing is reused)."""
    from seg_pipeline.cli.launch import plan_rescore
    from seg_pipeline.platform.rescore import REUSED_TAG

    if args.job != "rescore" or args.reingest:
        return set(), {}, None
    plan = plan_rescore(settings)
    if not args.quiet:
        for source, run_id in plan.reused.items():
            print(f"  reusing {source}: unchanged since its validated ingestion in run {run_id[:8]}")
        for source, why in plan.ingest.items():
            print(f"  ingesting {source}: {why}")
    if not plan.reused:
        return set(), {}, None
    return plan.left_out(), {REUSED_TAG: ",".join(plan.reused)}, plan.as_of


def _close_abandoned_runs(settings: Settings, quiet: bool) -> None:
    """Runs whose process was killed stay "started" on the instance and in MLflow; record how they ended."""
    from seg_pipeline.cli.launch import fail_abandoned_runs
    from seg_pipeline.platform.tracking import MlflowTracking, TrackingUnavailable

    abandoned = fail_abandoned_runs()
    if not abandoned:
        return
    try:
        mlflow_runs = MlflowTracking.of(settings).end_runs_of(abandoned)
    except TrackingUnavailable:
        mlflow_runs = 0  # the run's own MLflow check says so, if it needs the store
    if not quiet:
        print(
            f"Marked {len(abandoned)} run(s) failed whose process ended without finishing them: "
            f"{', '.join(abandoned)}"
            + (f" ({mlflow_runs} MLflow run(s) marked KILLED)" if mlflow_runs else ""),
            file=sys.stderr,
        )


def _prepare_tracking_store(settings: Settings) -> None:
    """Create (or migrate) a local MLflow store before the run, with Ctrl-C and SIGTERM held until it is done:
    MLflow migrates sqlite without transactional DDL, so an interrupt half-way leaves the store unusable
    ("table _alembic_tmp_... already exists") for every later run. A signal that arrives meanwhile is
    delivered right after. Errors are left to the step that needs the store, which reports them."""
    import signal

    from seg_pipeline.platform.tracking import MlflowTracking

    if not settings.mlflow_tracking_uri.startswith("sqlite:"):
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with contextlib.suppress(Exception):
            MlflowTracking.of(settings).client()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _resolve_pending_publish(settings: Settings, quiet: bool) -> bool:
    """A publish that stopped between its two stores' commits: put it right now (publish/pending.py), or say
    that the stores disagree. Returns False while they do."""
    from seg_pipeline.publish.pending import STATUS_LOCK_WAIT_SECONDS, resolve_configured

    resolution = resolve_configured(settings, STATUS_LOCK_WAIT_SECONDS)
    if resolution is None or resolution.action == "in_progress":
        return True
    if resolution.unresolved:
        print(redact(f"warning: {resolution.message}"), file=sys.stderr)
        return False
    if not quiet:
        print(redact(f"Resolved an unfinished publish: {resolution.message}"), file=sys.stderr)
    return True


def cmd_status(args: argparse.Namespace) -> int:
    from seg_pipeline.cli.launch import prepare_dagster_home, recent_runs
    from seg_pipeline.defs.automation import read_alerts

    settings = _resolve_settings(args)
    dagster_home = prepare_dagster_home(settings.dagster_home)
    _close_abandoned_runs(settings, quiet=False)
    stores_agree = _resolve_pending_publish(settings, quiet=False)
    runs = recent_runs(args.limit)
    if not runs:
        print(f"No runs yet on the instance in {dagster_home}. Start one with `seg-pipeline run`.")
        return EXIT_OK if stores_agree else EXIT_FAILED
    print(f"Recent runs on the instance in {dagster_home}:")
    print(f"  {'run id':<36}  {'job':<14} {'status':<10} {'started (UTC)':<19} {'seconds':>8}")
    for run in runs:
        started = run.started.strftime("%Y-%m-%d %H:%M:%S") if run.started else "-"
        seconds = f"{run.seconds:8.1f}" if run.seconds is not None else "       -"
        print(f"  {run.run_id:<36}  {run.job:<14} {run.status:<10} {started:<19} {seconds}")
        where = "stopped at" if run.status == "CANCELED" else "failed at"  # canceled: interrupted
        for failure in run.failures:
            print(redact(f"      {where} {failure}"))
    alerts = read_alerts(settings, 5)
    if alerts:
        print(f"Recent alerts ({settings.alerts_path}):")
        for alert in alerts:
            steps = "; ".join(f"{s['step']}: {s['error']}" for s in alert["failed_steps"]) or alert["message"]
            print(
                redact(
                    f"  {alert['recorded_at']}  {alert['job']} run {alert['run_id']} ({alert['trigger']}): {steps}"
                )
            )
    return EXIT_OK if stores_agree else EXIT_FAILED  # the published stores disagree: worth a non-zero exit


ACTIONS = "actions"  # `export actions`: the retention_actions table, one tier or the retention list
ACTION_TIER_CHOICES = ("personal_outreach", "semi_automated", "automated", "retention", "all")


def cmd_export(args: argparse.Namespace) -> int:
    from seg_pipeline.churn.actions import ACTION_TIERS, CONTROL, RETENTION_TIERS
    from seg_pipeline.cleaning.privacy import erasure_keys, resolve_key
    from seg_pipeline.publish.contract import PUBLISHED_TABLES
    from seg_pipeline.publish.export import EXPORT_SUFFIXES, erased_customer_ids, write_export
    from seg_pipeline.publish.stores import read_postgres_table, read_warehouse_table

    settings = _resolve_settings(args)
    table = "retention_actions" if args.table == ACTIONS else args.table
    if table not in PUBLISHED_TABLES:
        raise SegPipelineError(
            f"unknown table {args.table!r}; published tables: {', '.join(PUBLISHED_TABLES)} (or {ACTIONS})"
        )
    if args.tier is not None and args.table != ACTIONS:
        raise SegPipelineError(f"--tier selects rows of `export {ACTIONS}`, not of {args.table}")
    if args.include_controls and args.table != ACTIONS:
        raise SegPipelineError(f"--include-controls keeps rows of `export {ACTIONS}`, not of {args.table}")
    out = Path(args.out)
    if out.suffix.lower() not in EXPORT_SUFFIXES:
        raise SegPipelineError(f"--out {out}: write a {' or '.join(EXPORT_SUFFIXES)} file")
    if args.source == "postgres":
        dsn = settings.publish_dsn
        if dsn is None:
            raise SegPipelineError(
                "--from postgres: no DSN configured (set SEG_PUBLISH_DSN or publish.postgres_dsn)"
            )
        frame = read_postgres_table(dsn, settings.publish.postgres_schema, table)
        where = f"PostgreSQL schema {settings.publish.postgres_schema}"
    else:
        frame = read_warehouse_table(settings.warehouse_path, table)
        where = f"the warehouse {settings.warehouse_path}"
    if frame is None:
        raise SegPipelineError(f"{table} has not been published to {where} yet; run `seg-pipeline run` first")
    what = table
    if args.table == ACTIONS:
        tier = args.tier or "all"
        tiers = {"retention": RETENTION_TIERS, "all": ACTION_TIERS}.get(tier, (tier,))
        frame = frame[frame["risk_tier"].isin(tiers)].reset_index(drop=True)
        what = f"{table} ({tier})"
        if not args.include_controls:  # a contact list: the control arm is measured by not being contacted
            controls = frame["arm"].eq(CONTROL).to_numpy(dtype=bool)
            frame = frame[~controls].reset_index(drop=True)
            if controls.any():
                print(f"Left out {int(controls.sum()):,} customers of the control arm (never contact them; "
                      "--include-controls lists them)")  # fmt: skip
    withheld = 0
    erased = erasure_keys(settings.home)
    if erased and "customer_id" in frame:
        key = resolve_key(settings.privacy.pseudonymization_key_env, settings.home)
        id_map = read_warehouse_table(settings.warehouse_path, "customer_id_map", "clean")
        pending = erased_customer_ids(frame["customer_id"], erased, key, id_map)
        withheld = int(pending.sum())
        frame = frame[~pending.to_numpy()].reset_index(drop=True)
    rows = write_export(frame, out)  # CSV spreadsheet-safe: formula-like text cells start with '
    print(f"Wrote {rows:,} rows of {what} from {where} to {out}")
    if withheld:
        print(f"Left out {withheld:,} customers with an erasure request the next run applies (forget)")
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

    from seg_pipeline.cleaning.privacy import resolve_key
    from seg_pipeline.explain import ErasureRegister, explain

    settings = _resolve_settings(args)
    key = resolve_key(settings.privacy.pseudonymization_key_env, settings.home)
    result = explain(settings.warehouse_path, args.customer_id, ErasureRegister.read(settings.home, key),
                     currency=settings.report.currency, locale=settings.report.locale)  # fmt: skip
    print(json.dumps(result.as_json(), indent=2) if args.json else result.text())
    # an erasure request (pending or applied) is an answer, not an unknown customer
    return 0 if result.found or result.erasure else 1


# a warnings filter (PYTHONWARNINGS syntax: action:message prefix) for `dagster dev`'s notice about itself
SUPERSEDED_DEV = "ignore:Function `dev_command` is superseded"


def cmd_dev(args: argparse.Namespace) -> int:
    from seg_pipeline.cli.launch import prepare_dagster_home

    settings = _resolve_settings(args)
    _demo_key_notice(settings)
    prepare_dagster_home(settings.dagster_home)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    workspace = Path(args.workspace).resolve()
    orchestration = settings.orchestration
    try:  # the links the runs record point here: the UI's are dead without it
        docs = DocsServer(settings_roots(settings), orchestration.docs_host, orchestration.docs_port)
    except OSError as exc:
        raise SegPipelineError(
            f"cannot serve Data Docs and reports on {orchestration.docs_url}: {exc.strerror or exc}",
            hint="stop what listens there, or choose another port: --set orchestration.docs_port=PORT",
        ) from None
    print(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    print(f"Data Docs on {datadocs_url(settings)}, reports on {report_url(settings)}", flush=True)
    docs.start()
    try:
        command = [dagster, "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)]
        env = {**os.environ, **settings_environment(args.settings_source)}  # the code location's settings
        if not args.verbose:  # `dagster dev` warns its own CLI is superseded by `dg dev` (dagster-dg-cli)
            env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), SUPERSEDED_DEV]))
        return subprocess.call(command, env=env)
    finally:
        docs.stop()


# --- parser -----------------------------------------------------------------------------------------


VERBOSE_HELP = "on an error, also print the traceback"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seg-pipeline",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    # every command takes --verbose too; SUPPRESS keeps `seg-pipeline --verbose CMD` from being reset
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    def add_command(name: str, help: str, verbose: bool = True) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            parents=[common] if verbose else [],
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    gen = add_command(
        "generate", help="write a synthetic company (demo: five extracts; cohort: CRM and orders) + truth/"
    )
    _settings_args(gen)
    gen.add_argument(
        "--scenario",
        choices=("demo", "cohort"),
        default="demo",
        help="demo: a messy B2B company with five sources; cohort: one acquisition quarter of a retailer, "
        "orders only, buying as in BG/NBD (the case where naive churn baselines are hard to beat)",
    )
    gen.add_argument("--customers", type=int, default=20_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--out", metavar="DIR", help="output folder (default: the config's landing folder)")
    gen.add_argument("--format", choices=("csv", "parquet"), default="csv")
    gen.add_argument(
        "--history-days",
        type=int,
        default=None,
        help="days of history before as_of (default 730; cohort: 540, at least 120, the cohort's "
        "quarter starts then)",
    )
    gen.add_argument(
        "--messiness",
        type=float,
        default=None,
        help="multiply every messiness rate (0 = clean data; default 1 for demo, 0 for cohort)",
    )
    gen.add_argument(
        "--rate", metavar="NAME=VALUE", action="append", default=[], help="set one messiness rate"
    )
    gen.add_argument(
        "--campaign", action="store_true",
        help="the same company, with the retention list last published (published.retention_actions in the "
        "warehouse) worked after its as_of: its treatment arm contacted, with a known effect per tier "
        "(truth/campaign.csv); adds the interventions extract. Pass the --customers, --seed and --as-of the "
        "company was generated with.",
    )  # fmt: skip
    gen.add_argument(
        "--campaign-effect", metavar="TIER=SHARE", action="append", default=[],
        help="with --campaign: the share of a tier's contacted would-be churners kept active (defaults: "
        "personal_outreach 0.5, semi_automated 0.3, automated 0.15)",
    )  # fmt: skip
    gen.add_argument("--quiet", action="store_true", help="no progress (the summary of files still prints)")
    gen.set_defaults(func=cmd_generate)

    run = add_command(
        "run", help="execute the pipeline on the Dagster instance in $DAGSTER_HOME", verbose=False
    )
    _settings_args(run)
    run.add_argument(
        "--job",
        default="full_refresh",
        choices=("full_refresh", "rescore"),
        help="full_refresh: everything; rescore: fresh features scored by the champion, no training (sources "
        "whose extract, settings, as_of, erasure requests and code are unchanged since their last successful "
        "ingestion are not ingested again)",
    )
    run.add_argument(
        "--reingest",
        action="store_true",
        help="rescore: ingest and validate every source again, even where nothing changed",
    )
    run.add_argument("--quiet", action="store_true", help="no step lines and no summary; errors only")
    run.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also print Dagster's event log (with tracebacks), and the traceback of an error",
    )
    run.set_defaults(func=cmd_run)

    status = add_command("status", help="list recent runs and their outcome")
    _settings_args(status)
    status.add_argument("--limit", type=int, default=10)
    status.set_defaults(func=cmd_status)

    export = add_command("export", help="write a published table or an action list to a CSV or Parquet file")
    export.description = (
        "Write a published table to CSV or Parquet (by the --out suffix). `export actions --tier T` writes\n"
        "one action tier of retention_actions (personal_outreach, semi_automated, automated), the retention\n"
        "list (retention: the first two) or all three (all, the default), in rank order.\n"
        "Customers with an erasure request recorded since the last run are left out (and counted).\n"
        "In CSV, text cells that a spreadsheet would run as a formula (starting with = + - @, a tab, CR,\n"
        "LF or NUL, their full-width or small forms, or spaces then one of these) are written with a\n"
        "leading ' so Excel, LibreOffice and Google Sheets show them as text; numbers, dates and booleans\n"
        "are written as they are. The published tables and Parquet files keep the raw values."
    )
    _settings_args(export)
    export.add_argument(
        "table", help="actions, or a published table: customer_segments, churn_scores, segment_profiles, "
        "segment_history, retention_actions, kpi_history",
    )  # fmt: skip
    export.add_argument(
        "--out", metavar="FILE", required=True,
        help="the .csv or .parquet file to write (in CSV, text a spreadsheet would run as a formula starts with ')",
    )  # fmt: skip
    export.add_argument(
        "--tier", choices=ACTION_TIER_CHOICES, default=None,
        help="with `export actions`: one action tier, retention (personal_outreach and semi_automated) or all",
    )  # fmt: skip
    export.add_argument(
        "--include-controls", action="store_true",
        help="with `export actions`: keep the control arm (held out, never to be contacted) for analysis",
    )  # fmt: skip
    export.add_argument(
        "--from", dest="source", choices=("warehouse", "postgres"), default="warehouse",
        help="the store to read (default: the warehouse, which every publish writes)",
    )  # fmt: skip
    export.set_defaults(func=cmd_export)

    explain_cmd = add_command(
        "explain", help="a customer's segment, lifecycle stage, churn risk and drivers, consent, in words"
    )
    _settings_args(explain_cmd)
    explain_cmd.add_argument("customer_id", help="the CRM's customer id")
    explain_cmd.add_argument("--json", action="store_true", help="the same as JSON")
    explain_cmd.set_defaults(func=cmd_explain)

    forget = add_command("forget", help="record an erasure request; every run honours all of them")
    _settings_args(forget)
    forget.add_argument("customer_id", help="the CRM's customer id")
    forget.set_defaults(func=cmd_forget)

    dev = add_command("dev", help="start the Dagster UI on localhost for this config's instance")
    _settings_args(dev)
    dev.add_argument("--host", default=UI_HOST)
    dev.add_argument("--port", type=int, default=UI_PORT)
    dev.add_argument("--workspace", default="workspace.yaml")
    dev.set_defaults(func=cmd_dev)
    return parser


def _quiet_libraries(verbose: bool) -> None:
    """The command prints its own lines; the libraries' log lines and warnings only under --verbose.

    - psycopg logs a warning when it cannot roll back a connection that is already gone ("error ignored ...:
      the connection is lost"), which Python prints on stderr for want of a handler; the step's retry line
      and error say it already.
    - MLflow logs at INFO to stderr ("Creating initial MLflow database tables..."); its own variable sets the
      level, and reaches the processes `dev` starts too.
    """
    if verbose:
        return
    driver = logging.getLogger("psycopg")
    if not any(isinstance(h, logging.NullHandler) for h in driver.handlers):
        driver.addHandler(logging.NullHandler())
        driver.propagate = False
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.verbose)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        if args.command == "run":
            print("  `seg-pipeline status` shows how the run ended", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error gets a short explanation, the traceback on --verbose
        return report_error(exc, args.verbose, home=getattr(args, "resolved_home", None))


if __name__ == "__main__":
    sys.exit(main())

"""What the stage modules of the defs layer share: the run's id and job, and the retry policy of steps that
read or write outside the process."""

import dagster as dg

from seg_pipeline.config import Settings

DIRECT = "direct"  # an asset invoked outside a run (the benchmark's Dagster-overhead comparison)


def _run_attribute(context, name: str) -> str:
    try:
        return getattr(context.run, name)
    except dg.DagsterError:  # invoked directly: no run
        return DIRECT


def current_run_id(context) -> str:
    """The Dagster run's id; "direct" when the asset is invoked outside a run."""
    return _run_attribute(context, "run_id")


def current_job_name(context) -> str:
    return _run_attribute(context, "job_name")


def io_retry_policy(settings: Settings) -> dg.RetryPolicy:
    """For steps that read or write outside the process (extracts, PostgreSQL): transient errors (a file
    share or a database restarting) are retried with exponential backoff; our own errors (a bad file,
    a contract breach) are raised as Failure(allow_retries=False) and fail at once."""
    orchestration = settings.orchestration
    return dg.RetryPolicy(max_retries=orchestration.io_retries, delay=orchestration.io_retry_delay_seconds,
                          backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)  # fmt: skip

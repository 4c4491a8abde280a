"""The settings of a run as a Dagster resource: the one configuration model (config.py), resolved once per
run from the YAML file, the ``SEG_*`` variables and the run's overrides.

The overrides are the resource's run config (``resources.settings.config.overrides``: dotted key -> YAML
value, as `seg-pipeline run --set` takes them), so a run launched from the CLI, the launchpad or a schedule
records exactly what it was told, and re-executing it in the UI repeats it. Every other resource (the
warehouse, MLflow) derives from this one (defs/resources.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from seg_pipeline.config import Settings, load_settings, parse_scalar
from seg_pipeline.errors import SegPipelineError


class PipelineSettings(dg.ConfigurableResource):
    """The seg-pipeline configuration for a run: ``config_file`` (else $SEG_CONFIG), then ``SEG_*`` variables,
    then ``overrides``. ``resolved`` is the validated Settings; ``as_of`` the run's scoring date."""

    config_file: str | None = None
    overrides: dict[str, str] = {}

    _resolved: Settings | None = PrivateAttr(default=None)
    _as_of: dt.date | None = PrivateAttr(default=None)

    @classmethod
    def of(cls, settings: Settings, config_file: str | None = None) -> PipelineSettings:
        """The resource that resolves to ``settings`` (its non-default keys as overrides)."""
        resource = cls(config_file=config_file, overrides=as_overrides(settings))
        resource._resolved = settings
        return resource

    @property
    def override_items(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.overrides.items()]

    @property
    def resolved(self) -> Settings:
        if self._resolved is None:
            self._resolved = load_settings(self.config_file, self.override_items)
        return self._resolved

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        settings = self.resolved  # a bad key fails the run before its first step, naming the key
        self._as_of = settings.as_of or _run_date(context)

    @property
    def as_of(self) -> dt.date:
        """The configured as_of, else the date (UTC) the run was created: one date for every step of a run,
        also when it runs past midnight."""
        if self._as_of is None:
            self._as_of = self.resolved.as_of or dt.datetime.now(dt.UTC).date()
        return self._as_of


def _run_date(context: dg.InitResourceContext) -> dt.date:
    record = None
    if context.instance is not None and context.run_id:
        record = context.instance.get_run_record_by_id(context.run_id)
    created = record.create_timestamp if record is not None else dt.datetime.now(dt.UTC)
    return created.astimezone(dt.UTC).date()


def run_config(overrides: Mapping[str, str], config_file: str | None = None) -> dict:
    """The run config that gives a run these settings (what `seg-pipeline run` launches with)."""
    config: dict[str, Any] = {"overrides": dict(overrides)}
    if config_file is not None:
        config["config_file"] = config_file
    return {"resources": {"settings": {"config": config}}}


# --- settings as overrides --------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    """A YAML scalar that ``parse_scalar`` reads back as ``value`` (plain where that is so, else JSON, which
    is YAML too)."""
    if isinstance(value, str) and parse_scalar(value) == value:
        return value
    return json.dumps(value)


def _flatten(data: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(data, dict) and data and all(isinstance(k, str) and "." not in k for k in data):
        for key, value in data.items():
            _flatten(value, f"{prefix}.{key}" if prefix else key, out)
    else:
        out[prefix] = data


def _plain(settings: Settings) -> dict:
    data = settings.model_dump(mode="json")
    dsn = settings.publish.postgres_dsn  # never a password (config.py refuses one): the value itself
    data["publish"]["postgres_dsn"] = dsn.get_secret_value() if dsn is not None else None
    return data


def as_overrides(settings: Settings) -> dict[str, str]:
    """Dotted key -> YAML text of every setting that differs from the defaults (and ``home``), such that
    ``load_settings(overrides=...)`` without a file or variables gives ``settings`` back."""
    baseline = Settings.model_validate({"home": str(settings.home)})
    current, default = {}, {}
    _flatten(_plain(settings), "", current)
    _flatten(_plain(baseline), "", default)
    overrides = {"home": str(settings.home)}
    for key, value in current.items():
        if key not in default or default[key] != value:
            overrides[key] = _value_text(value)
    dropped = [
        key for key in default if key not in current and not any(k.startswith(f"{key}.") for k in current)
    ]
    back = load_settings(overrides=[f"{k}={v}" for k, v in overrides.items()], environ={})
    if dropped or back != settings:
        raise SegPipelineError(  # a setting overrides cannot express (a default key removed): a bug here
            f"these settings cannot be expressed as overrides (keys {', '.join(dropped) or 'changed in transit'})"
        )
    return overrides


def check_schedule(settings: Settings) -> None:
    """The schedule's cron expression as Dagster reads it (the config model checks only its shape): a user
    error naming the key, raised when the definitions load and before `seg-pipeline run` launches."""
    cron = settings.orchestration.schedule_cron
    try:
        dg.ScheduleDefinition(name="seg_pipeline_cron_check", cron_schedule=cron, job_name="unused")
    except dg.DagsterInvalidDefinitionError:
        raise SegPipelineError(
            f"invalid configuration:\n  config key orchestration.schedule_cron: not a valid cron expression: "
            f"{cron!r} (e.g. '0 2 * * *')"
        ) from None

"""Dagster resources: the resolved settings, handed to every asset, and the publish target."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from seg_pipeline.config import Settings, settings_from_json


class PipelineSettings(dg.ConfigurableResource):
    """The resolved seg-pipeline configuration (config.py), fixed when the code location loads."""

    settings_json: str

    @classmethod
    def of(cls, settings: Settings) -> PipelineSettings:
        return cls(settings_json=settings.to_json())

    def get(self) -> Settings:
        return settings_from_json(self.settings_json)


class PublishTarget(dg.ConfigurableResource):
    """Where published tables go: always the warehouse, and PostgreSQL when a DSN is configured.

    The DSN is given as ``EnvVar("SEG_PUBLISH_DSN")`` when that variable is set, so the UI shows the
    variable's name rather than the password.
    """

    warehouse_path: str
    postgres_dsn: str | None = None
    postgres_schema: str = "seg_pipeline"
    lock_wait_seconds: float = 300.0

    @classmethod
    def of(cls, settings: Settings) -> PublishTarget:
        configured = settings.publish.postgres_dsn
        dsn = (
            dg.EnvVar("SEG_PUBLISH_DSN")
            if os.environ.get("SEG_PUBLISH_DSN")
            else (configured.get_secret_value() if configured else None)
        )
        return cls(
            warehouse_path=str(settings.warehouse_path),
            postgres_dsn=dsn,
            postgres_schema=settings.publish.postgres_schema,
            lock_wait_seconds=settings.publish.lock_wait_seconds,
        )

    @property
    def postgres(self) -> tuple[str, str] | None:
        return (self.postgres_dsn, self.postgres_schema) if self.postgres_dsn else None

    def publish(self, tables: dict, monitoring: dict, run_id: str, erase_keys: list[str] = ()):
        """Both stores, or neither (writers.publish); returns a writers.PublishResult."""
        from seg_pipeline.publish.writers import publish

        return publish(Path(self.warehouse_path), tables, monitoring, self.postgres, self.lock_wait_seconds,
                       run_id, erase_keys=list(erase_keys))  # fmt: skip

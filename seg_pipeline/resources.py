"""Dagster resources: the resolved settings, handed to every asset."""

from __future__ import annotations

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

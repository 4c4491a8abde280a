"""The ``validations`` resource: the run's GX project (<home>/gx) and Data Docs site (<home>/datadocs).

Each gate validates through it and gets its result page at once; the site's index page, which reads every
stored result and so costs more with every run kept, is built once when the run ends (also a failed one)
instead of with each of a run's ~30 gates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from seg_pipeline.config import Settings

if TYPE_CHECKING:  # GX loads when the first gate validates, not with the code location
    from seg_pipeline.quality.gx import SuiteOutcome


@dataclass
class Validations:
    expectations_dir: Path
    gx_root: Path
    docs_dir: Path
    docs_base_url: str | None = None  # where `seg-pipeline dev` serves the site (orchestration.docs_url)
    _newest: Any = field(default=None, repr=False)  # the last result validated through this resource

    @classmethod
    def of(cls, settings: Settings) -> Validations:
        return cls(settings.expectations_dir, settings.gx_root, settings.datadocs_dir,
                   settings.orchestration.docs_url)  # fmt: skip

    def suite_path(self, suite: str) -> Path:
        return self.expectations_dir / f"{suite}.json"

    def suite_columns(self, suite: str) -> set[str]:
        from seg_pipeline.quality.gx import suite_columns

        return suite_columns(self.suite_path(suite))

    def validate(self, frame: pd.DataFrame, suite: str, *, run_name: str, parameters: dict,
                 absent_columns: set[str] | None = None) -> SuiteOutcome:  # fmt: skip
        """``frame`` against expectations/<suite>.json, filed under ``run_name`` with its Data Docs page."""
        from seg_pipeline.quality.gx import validate

        outcome = validate(frame, self.suite_path(suite), gx_root=self.gx_root, docs_dir=self.docs_dir,
                           run_name=run_name, parameters=parameters, absent_columns=absent_columns,
                           docs_base_url=self.docs_base_url, build_index=False)  # fmt: skip
        self._newest = outcome.result_id
        return outcome

    def build_index(self) -> Path | None:
        """The site's index page with every validation so far; None when nothing was validated here."""
        if self._newest is None:
            return None
        from seg_pipeline.quality.gx import build_docs_index

        return build_docs_index(self.gx_root, self.docs_dir, self._newest)


@dg.resource(
    required_resource_keys={"settings"},
    description="The run's GX project (<home>/gx) and Data Docs site (<home>/datadocs); the site's index is "
    "built once, as the run ends.",
)
def validations_resource(context: dg.InitResourceContext):
    validations = Validations.of(context.resources.settings.resolved)
    try:
        yield validations
    finally:
        try:
            validations.build_index()
        except Exception as exc:  # the results and their pages are stored; only the list of them is late
            context.log.warning(f"Data Docs index not rebuilt ({type(exc).__name__}: {exc}); the next run "
                                "rebuilds it")  # fmt: skip

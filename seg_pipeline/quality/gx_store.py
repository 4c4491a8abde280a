"""The GX validation-results store of the pipeline's GX project: GX's own, except that results of
expectations on PII columns are written without the values they found (see ``gx.without_pii_values``).

Everything GX keeps on disk goes through it: the validation results under ``<home>/gx`` and, read back
from there, the Data Docs pages. Imported by GX itself (``module_name`` in great_expectations.yml).
"""

from __future__ import annotations

from great_expectations.data_context.store.validation_results_store import ValidationResultsStore

from seg_pipeline.quality.gx import without_pii_values


class PrivateValidationResultsStore(ValidationResultsStore):
    def serialize(self, value):  # noqa: D102 - GX's, with the values of PII columns left out
        if self.cloud_mode:
            return without_pii_values(value.to_json_dict())
        return self._expectationSuiteValidationResultSchema.dumps(
            without_pii_values(value.to_json_dict()), indent=2, sort_keys=True
        )

"""Run a Great Expectations suite from expectations/<table>.json on a DataFrame and build its Data Docs.

GX 1.x is called directly (the dagster-ge integration targets GX < 1). A file-backed GX project lives
under <home>/gx and its Data Docs under <home>/datadocs; each validation is filed under the Dagster
run id, so every run has its own result page that opens without a network (``offline_page``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from seg_pipeline.errors import SegPipelineError
from seg_pipeline.links import DATADOCS_ROUTE, served_url
from seg_pipeline.sources.masking import value_shape

DATASOURCE = "seg_pipeline"
DOCS_SITE = "local_site"

# Columns whose values identify a person. The raw stage holds them, but a gate's result never shows their
# values: results (and so Data Docs, kept for analysts long after a run) keep counts and shares only.
PII_COLUMNS = frozenset({"name", "email", "phone", "company"})
# what a result may hold of the values it found; emptied (lists) or removed for PII columns
_VALUE_LISTS = ("partial_unexpected_list", "partial_unexpected_counts", "partial_unexpected_index_list",
                "unexpected_list", "unexpected_index_list")  # fmt: skip
_VALUE_KEYS = ("observed_value", "details", "unexpected_index_query", "unexpected_rows")
PII_HIDDEN = "(not shown: a PII column)"
# Suites of tables whose cells come from the extracts: any text cell may hold personal data typed into the
# wrong column, so GX's results and Data Docs keep their text samples only by their shape (masking.py).
EXTRACT_TABLE_PREFIXES = ("raw_", "clean_")
SHORT_NUMBER_LIMIT = 1_000_000  # a phone number has 7 digits or more
_SHORT_NUMBER = re.compile(r"[+-]?\d{1,6}(?:\.\d+)?")
_MISSING_MARKERS = frozenset({"NaT", "nan", "NaN", "None", "<NA>", ""})
# Column expectations whose observed value is a type or a statistic of many rows. Any other column
# expectation may observe one cell (a min, a max, the most common value): any cell of an extract may hold
# personal data (an email typed into a date column), so the check's metadata and message show its shape.
_AGGREGATE_OBSERVATIONS = frozenset({
    "expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list", "expect_column_to_exist",
    "expect_column_mean_to_be_between", "expect_column_stdev_to_be_between", "expect_column_sum_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between", "expect_column_unique_value_count_to_be_between",
})  # fmt: skip
RESULTS_STORE = {
    "class_name": "PrivateValidationResultsStore",
    "module_name": "seg_pipeline.quality.gx_store",
    "store_backend": {
        "class_name": "TupleFilesystemStoreBackend",
        "base_directory": "uncommitted/validations/",
    },
}

# GX 1.x's Data Docs pages load jQuery, Bootstrap, bootstrap-table, Vega and Font Awesome from CDNs, and GX's
# logo from its S3 bucket (with the data context's id in the query), and GX has no option to do otherwise:
# without a network the index shows headings and no validations. So the site's store backend
# (gx_site.OfflineSiteStoreBackend) writes every page through ``offline_page``, which points them at copies
# of the exact files in <docs>/static/vendor/ (static/vendor/ beside this module; jQuery from the
# XStatic-jQuery package), by relative URLs so that a page works opened as a file as well as served.
VENDOR_SOURCE = Path(__file__).with_name("static") / "vendor"
VENDOR_IN_SITE = Path("static", "vendor")
JQUERY_COPY = "jquery-3.7.1/jquery.min.js"  # from XStatic-jQuery
CDN_COPIES = {  # every URL GX 1.x's templates load (render/view/templates) -> its copy in the site
    "https://code.jquery.com/jquery-3.7.1.min.js": JQUERY_COPY,
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        "popper.js-1.12.9/umd/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "fontawesome-free-6.6.0/css/all.min.css",
    # the newest release of each major version, which is what these CDN URLs serve
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}  # fmt: skip
# GX's logo (light, and the dark-mode one GX ships no copy of) -> the copy GX puts in every site
GX_IMAGE = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/(?:logo-long|full_logo_dark)\.png"
    r"(?:\?[^\"'\s)]*)?"
)
# GX links a validation page's favicon one folder short of the site's root
_FAVICON = re.compile(r"(?<=[\"'])(?:\./|(?:\.\./)+)?static/images/favicon\.ico(?=[\"'])")
_CDN_REFERENCE = re.compile("|".join(f"(?<=[\"'])({re.escape(url)})(?=[\"'])" for url in CDN_COPIES))
_VENDOR_TAG = re.compile(r"<(?:script|link)\b[^>]*static/vendor/[^>]*>")
_CROSS_ORIGIN_ATTRIBUTES = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"")


@dataclass
class FailedExpectation:
    expectation: str
    column: str | None
    observed: Any
    unexpected_percent: float | None
    kwargs: dict

    rule: str | None = None

    def describe(self) -> str:
        where = f"{self.column}: " if self.column else ""
        bounds = ", ".join(
            f"{k} {_short(v)}"
            for k, v in self.kwargs.items()
            if k in ("min_value", "max_value", "mostly", "value_set")
        )
        if self.unexpected_percent is not None:
            seen = f"{self.unexpected_percent:.1f}% of rows unexpected"
        else:
            seen = f"observed {_short(self.observed)}"
        why = f" [{self.rule}]" if self.rule else ""
        return f"{where}{self.expectation.removeprefix('expect_')} ({bounds}): {seen}{why}"


@dataclass
class SuiteOutcome:
    suite: str
    success: bool
    success_percent: float
    evaluated: int
    failed: list[FailedExpectation] = field(default_factory=list)
    skipped_columns: list[str] = field(default_factory=list)
    docs_url: str | None = None  # the validation's page: http under docs_base_url, else file://
    docs_index: str | None = None  # the site's index, likewise
    docs_path: Path | None = None  # the page's file
    docs_index_path: Path | None = None
    result_id: Any = None  # GX's ValidationResultIdentifier of the stored result (build_docs_index)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def expectation_columns(kwargs: dict) -> set[str]:
    """The columns an expectation's kwargs name."""
    named = {
        kwargs.get("column"),
        kwargs.get("column_A"),
        kwargs.get("column_B"),
        *(kwargs.get("column_list") or ()),
    }
    return {c for c in named if isinstance(c, str)}


def private_result(kwargs: dict, result: dict) -> dict:
    """``result`` (one expectation's) without the values it found when the expectation is on a PII column."""
    if not expectation_columns(kwargs) & PII_COLUMNS:
        return result
    kept = {k: v for k, v in result.items() if k not in _VALUE_KEYS}
    kept.update({k: [] for k in _VALUE_LISTS if k in result})
    if "observed_value" in result:
        kept["observed_value"] = None
    return kept


def without_pii_values(validation: dict) -> dict:
    """A suite's validation result (JSON dict) with ``private_result`` applied to every expectation's result,
    and, for a table of extract cells, its text samples shown by their shape (``samples_by_shape``)."""
    extract_table = str(validation.get("suite_name") or "").startswith(EXTRACT_TABLE_PREFIXES)
    results = []
    for entry in validation.get("results") or []:
        config = entry.get("expectation_config") or {}
        kwargs = config.get("kwargs") or {}
        result = private_result(kwargs, entry.get("result") or {})
        if extract_table:
            result = samples_by_shape(result, cell_observed=_observes_a_cell(config.get("type"), kwargs))
        results.append({**entry, "result": result})
    return {**validation, "results": results}


def samples_by_shape(result: dict, cell_observed: bool = True) -> dict:
    """``result`` with every sample value that could be text typed into the wrong column (an email in an
    event type) replaced by its shape; dates, small numbers and missing markers stay as they are. The
    observed value too, when it is one cell (``cell_observed``) rather than a type or a statistic."""
    kept = {k: v for k, v in result.items() if k not in ("details", "unexpected_rows")}
    for key in ("partial_unexpected_list", "unexpected_list"):
        if isinstance(result.get(key), list):
            kept[key] = [_sample(v) for v in result[key]]
    if isinstance(result.get("partial_unexpected_counts"), list):
        kept["partial_unexpected_counts"] = [
            {**c, "value": _sample(c.get("value"))} if isinstance(c, dict) else c
            for c in result["partial_unexpected_counts"]
        ]
    if "observed_value" in result and cell_observed:
        kept["observed_value"] = _sample(result["observed_value"])
    return kept


def _sample(value: Any) -> Any:
    """The value if it cannot be personal data (a date, a number too short for a phone, a missing marker),
    else its shape."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and value in _MISSING_MARKERS):
        return value
    if isinstance(value, int | float):
        return value_shape(value) if abs(value) >= SHORT_NUMBER_LIMIT else value  # NaN compares False: kept
    text = str(value)
    if _SHORT_NUMBER.fullmatch(text):
        return value
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return value_shape(text)
    return value


def _observes_a_cell(expectation: str | None, kwargs: dict) -> bool:
    return bool(expectation_columns(kwargs)) and expectation not in _AGGREGATE_OBSERVATIONS


def shown_observation(expectation: str, kwargs: dict, observed: Any) -> Any:
    """What a failed expectation may show of what it observed: table-level and aggregate observations as
    they are, an observed cell value only by its shape (masking.py)."""
    if observed is None or not _observes_a_cell(expectation, kwargs):
        return observed
    return value_shape(observed)


def load_suite(path: Path) -> dict:
    """Read a suite file; a malformed one is the user's to fix, so say which and where."""
    if not path.is_file():
        raise SegPipelineError(f"GX suite not found: {path}. Restore it or set quality.expectations_dir.")
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SegPipelineError(
            f"GX suite {path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise SegPipelineError(f"GX suite {path}: expected an object with an 'expectations' list")
    return suite


def suite_columns(path: Path) -> set[str]:
    """Every column the suite at ``path`` names."""
    columns: set[str] = set()
    for expectation in load_suite(path)["expectations"]:
        kwargs = expectation.get("kwargs", {})
        columns |= {kwargs.get("column"), *kwargs.get("column_list", [])} - {None}
    return columns


def without_columns(suite: dict, absent: set[str]) -> tuple[dict, list[str]]:
    """Drop expectations on columns the source does not have (an optional column that is absent is not null data)."""
    kept, skipped = [], set()
    for expectation in suite["expectations"]:
        kwargs = expectation.get("kwargs", {})
        columns = {kwargs.get("column"), *kwargs.get("column_list", [])} - {None}
        if columns & absent:
            skipped |= columns & absent
        else:
            kept.append(expectation)
    return {**suite, "expectations": kept}, sorted(skipped)


def offline_page(page: str, depth: int) -> str:
    """A Data Docs page (HTML, ``depth`` folders below the site's root) that loads its CSS, JS and images
    from the site's own copies instead of CDNs (see ``CDN_COPIES``)."""
    up = "../" * depth
    page = _CDN_REFERENCE.sub(lambda m: f"{up}{(VENDOR_IN_SITE / CDN_COPIES[m.group(0)]).as_posix()}", page)
    page = GX_IMAGE.sub(f"{up}static/images/logo-long.png", page)
    page = _FAVICON.sub(f"{up}static/images/favicon.ico", page)
    # A page opened as a file has no origin: Chromium then refuses a script marked crossorigin, and has no
    # CORS response to check an integrity hash on. The copies are the exact files (the tests check those
    # hashes against them).
    return _VENDOR_TAG.sub(lambda m: _CROSS_ORIGIN_ATTRIBUTES.sub("", m.group(0)), page)


def vendor_files() -> dict[Path, Path]:
    """What goes into the site's static/vendor/: path there -> the file to copy (licences included)."""
    from xstatic.pkg import jquery

    files = {p.relative_to(VENDOR_SOURCE): p for p in VENDOR_SOURCE.rglob("*") if p.is_file()}
    files[Path(JQUERY_COPY)] = Path(jquery.BASE_DIR) / "jquery.min.js"
    return files


def install_vendor_files(docs_dir: Path) -> None:
    """Copy the files of ``vendor_files`` into the site when missing or changed (each replaced whole, so a
    page being read never gets half a file)."""
    target = docs_dir / VENDOR_IN_SITE
    for relative, source in vendor_files().items():
        copy = target / relative
        if copy.is_file() and copy.stat().st_size == source.stat().st_size:
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        temporary = copy.with_name(f".{copy.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, temporary)
        os.replace(temporary, copy)


def _file_of(url: str) -> Path:
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


def _link(page: Path, docs_dir: Path, docs_base_url: str | None) -> str:
    return served_url(docs_base_url, DATADOCS_ROUTE, docs_dir, page) if docs_base_url else page.as_uri()


# One configured context per GX project and site in this process: building one reads great_expectations.yml and
# sets up every store, a fifth of a validation's time when each gate built its own. The lock keeps two threads
# of one process from validating through the same context at once (GX's contexts are not thread-safe).
_CONTEXTS: dict[tuple[Path, Path], tuple[Any, threading.Lock]] = {}  # (project, site) -> (context, its lock)
_CONTEXTS_LOCK = threading.Lock()
SITE_MODULE = "seg_pipeline.quality.gx_site"


def _site_config(docs_dir: Path) -> dict:
    # Page views that share compiled templates (gx_site.py); no profiling section (the pipeline never
    # profiles, and GX would walk every stored result for it).
    page_view = {"module_name": SITE_MODULE, "class_name": "CompiledPageView"}
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {
            "class_name": "OfflineSiteStoreBackend",
            "module_name": SITE_MODULE,
            "base_directory": str(docs_dir.resolve()),
        },
        "site_index_builder": {
            "class_name": "DefaultSiteIndexBuilder",
            "view": {"module_name": SITE_MODULE, "class_name": "CompiledIndexPageView"},
        },
        "site_section_builders": {
            "expectations": {"view": page_view},
            "validations": {"view": page_view},
            "profiling": "None",
        },
    }


def _context(gx_root: Path, docs_dir: Path):
    """The project's context, configured once per process (and again when its project was removed)."""
    key = (gx_root.resolve(), docs_dir.resolve())
    with _CONTEXTS_LOCK:
        context, lock = _CONTEXTS.get(key, (None, threading.Lock()))
        if context is None or not (Path(context.root_directory) / "great_expectations.yml").is_file():
            _CONTEXTS[key] = (context := _configured_context(gx_root, docs_dir)), lock
        return context, lock


def _configured_context(gx_root: Path, docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    if context.variables.config_variables_file_path:
        # GX reads that YAML file again on every access to a context variable (~95 times a validation);
        # the pipeline keeps no secrets or variables there
        context.variables.config_variables_file_path = None
        context.variables.save()
        context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    bars = context.variables.progress_bars
    if (bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)) is not False:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    site = _site_config(docs_dir)
    stores = context.variables.stores or {}
    if (stores.get("validation_results_store") or {}).get("class_name") != RESULTS_STORE["class_name"]:
        context.add_store("validation_results_store", RESULTS_STORE)  # persisted in great_expectations.yml
    if context.list_data_docs_sites().get(DOCS_SITE) != site:
        if DOCS_SITE in context.list_data_docs_sites():
            context.update_data_docs_site(DOCS_SITE, site)
        else:
            context.add_data_docs_site(DOCS_SITE, site)
    return context


def build_docs_index(gx_root: Path, docs_dir: Path, newest: Any) -> Path | None:
    """Build the site's index page (every stored validation, newest first) and return its file; ``newest``
    is the ``SuiteOutcome.result_id`` of a validation whose page is built again with it (GX builds the index
    only along with at least one page: an empty list of pages means all of them).

    Reading every stored result, the index costs more with each run kept; a pipeline run builds it once at its
    end (platform/validations.py) rather than with each gate's page."""
    context, validating = _context(gx_root, docs_dir)
    with validating:
        install_vendor_files(docs_dir)
        context.build_data_docs(site_names=[DOCS_SITE], resource_identifiers=[newest], build_index=True)
        index = context.get_docs_sites_urls(site_names=[DOCS_SITE])
    return _file_of(index[0]["site_url"]) if index else None


def _release_batches(context) -> None:
    """Let go of the validated frame. GX's pandas datasource keeps the last batch of every asset in its
    execution engine's cache for as long as the process lives: a pipeline run would hold every table it
    validated (at 1M customers, gigabytes of event tables no step needs any more)."""
    manager = context.data_sources.get(DATASOURCE).get_execution_engine().batch_manager
    manager.reset_batch_cache()
    manager.batch_data_cache.clear()


def validate(
    frame: pd.DataFrame,
    suite_path: Path,
    *,
    gx_root: Path,
    docs_dir: Path,
    run_name: str,
    parameters: dict[str, Any] | None = None,
    absent_columns: set[str] | None = None,
    docs_base_url: str | None = None,
    build_index: bool = True,
) -> SuiteOutcome:
    """Validate ``frame`` against the suite and file the result and its Data Docs page under ``run_name``.

    ``docs_base_url`` is where `seg-pipeline dev` serves the site (``orchestration.docs_url``); the
    outcome's links are http URLs under it, or file:// URLs without it. ``build_index=False`` leaves the
    site's index page to a later ``build_docs_index`` (a pipeline run builds it once, at its end)."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory batch under this many bytes with an md5 over a hash of every row, a
    # third of the validation time of an event table; it is only a batch marker, and a result here is
    # identified by the Dagster run and asset instead. A threshold of 0 skips it (GX has no option for it).
    pandas_execution_engine.HASH_THRESHOLD = 0
    raw_suite = load_suite(suite_path)
    name = raw_suite.get("name") or suite_path.stem
    suite_spec, skipped = without_columns(raw_suite, absent_columns or set())
    try:
        suite = gx.ExpectationSuite(
            name=name, expectations=suite_spec["expectations"], meta=suite_spec.get("meta") or {}
        )
    except Exception as exc:  # GX raises several types for an unknown expectation or bad kwargs
        raise SegPipelineError(f"GX suite {suite_path}: {type(exc).__name__}: {exc}") from None
    context, validating = _context(gx_root, docs_dir)
    with validating:
        install_vendor_files(docs_dir)
        datasource = context.data_sources.add_or_update_pandas(DATASOURCE)
        try:
            asset = datasource.get_asset(name)
        except LookupError:
            asset = datasource.add_dataframe_asset(name)
        try:
            batch = asset.get_batch_definition("whole_table")
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe("whole_table")
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        # the checkpoint stores the result; its page is built below, without the index (see build_index)
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(name=name, validation_definitions=[definition], actions=[],
                          result_format={"result_format": "SUMMARY"})
        )  # fmt: skip
        try:
            result = checkpoint.run(
                batch_parameters={"dataframe": frame},
                expectation_parameters=parameters or {},
                run_id=RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)),
            )
        finally:
            _release_batches(context)
        (identifier, validation), *_ = result.run_results.items()
        context.build_data_docs(
            site_names=[DOCS_SITE], resource_identifiers=[identifier], build_index=build_index
        )
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_names=[DOCS_SITE])
        # the index's place, built or not yet (build_index)
        index = context.get_docs_sites_urls(site_names=[DOCS_SITE], only_if_exists=False)
    failed = []
    for r in validation.results:
        if r.success:
            continue
        kwargs = r.expectation_config.kwargs
        found = private_result(kwargs, r.result)  # these go into the check's metadata and the CLI's output
        observed = shown_observation(r.expectation_config.type, kwargs, found.get("observed_value"))
        if observed is None:
            observed = found.get("unexpected_count", PII_HIDDEN if found is not r.result else None)
        failed.append(
            FailedExpectation(
                expectation=r.expectation_config.type,
                column=kwargs.get("column"),
                observed=observed,
                unexpected_percent=found.get("unexpected_percent"),
                kwargs={k: v for k, v in kwargs.items() if k != "batch_id"},
                rule=(r.expectation_config.meta or {}).get("rule"),
            )
        )
    page = _file_of(urls[0]["site_url"]) if urls else None
    index_page = _file_of(index[0]["site_url"]) if index else None
    stats = validation.statistics
    return SuiteOutcome(
        suite=name,
        success=bool(validation.success),
        success_percent=float(stats.get("success_percent") or (100.0 if validation.success else 0.0)),
        evaluated=int(stats.get("evaluated_expectations", 0)),
        failed=failed,
        skipped_columns=skipped,
        docs_url=_link(page, docs_dir, docs_base_url) if page else None,
        docs_index=_link(index_page, docs_dir, docs_base_url) if index_page else None,
        docs_path=page,
        docs_index_path=index_page,
        result_id=identifier,
    )

"""The pieces of the pipeline's Data Docs site that GX builds from its config (``module_name`` there):

- the store backend: GX's own file backend, except that every page is written through ``gx.offline_page``
  (its CSS and JS from the site's static/vendor/, not from CDNs). Rewriting each page as GX writes it, rather
  than after the build, means no other process validating at the same time can ever find (or overwrite) a
  page that still points at a CDN;
- the page views: GX's own, except that their templates are compiled once per process. GX makes a new Jinja
  environment for every page it renders, and compiling its ~50 templates again was half of a page's time.
"""

from __future__ import annotations

from pathlib import PurePath

from great_expectations.data_context.store.tuple_store_backend import TupleFilesystemStoreBackend
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache

from seg_pipeline.quality.gx import offline_page


class OfflineSiteStoreBackend(TupleFilesystemStoreBackend):
    def _set(self, key, value, **kwargs):  # noqa: D102 - GX's, with each page made offline first
        if isinstance(value, str):
            relative = PurePath(
                self._convert_key_to_filepath(key if isinstance(key, tuple) else key.to_tuple())
            )
            if relative.suffix == ".html":
                value = offline_page(value, depth=len(relative.parts) - 1)
        return super()._set(key, value, **kwargs)


class _CompiledTemplates(BytecodeCache):
    """Jinja's compiled templates, in memory for the life of the process. Jinja keys each by template and
    checks it against the template's source, so a changed template is compiled again."""

    def __init__(self) -> None:
        self._compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if (compiled := self._compiled.get(bucket.key)) is not None:
            bucket.bytecode_from_string(compiled)

    def dump_bytecode(self, bucket) -> None:
        self._compiled[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = _CompiledTemplates()


class _CompiledTemplatesView:
    """Mixed into GX's page views: their Jinja environment keeps compiled templates in COMPILED_TEMPLATES."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = COMPILED_TEMPLATES


class CompiledPageView(_CompiledTemplatesView, DefaultJinjaPageView):
    pass


class CompiledIndexPageView(_CompiledTemplatesView, DefaultJinjaIndexPageView):
    pass

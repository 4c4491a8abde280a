"""The store backend of the pipeline's Data Docs site: GX's own file backend, except that every page is
written through ``gx.offline_page`` (its CSS and JS from the site's static/vendor/, not from CDNs).

Rewriting each page as GX writes it, rather than after the build, means no other process validating at
the same time can ever find (or overwrite) a page that still points at a CDN. Imported by GX itself
(``module_name`` in the site's config).
"""

from __future__ import annotations

from pathlib import PurePath

from great_expectations.data_context.store.tuple_store_backend import TupleFilesystemStoreBackend

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

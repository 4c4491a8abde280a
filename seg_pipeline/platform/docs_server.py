"""The HTTP server of Data Docs and reports that `seg-pipeline dev` runs beside the Dagster UI, and the URLs
of the pages it serves.

Browsers refuse file:// links from an http page such as the Dagster UI (and over an SSH tunnel a file path
names the server's disk), so every link the pipeline records is an http URL under
``orchestration.docs_url``: ``/datadocs/...`` is ``<home>/datadocs``, ``/reports/...`` is
``<home>/reports``, and nothing else of the home (warehouse, secrets) is served.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from seg_pipeline.links import DATADOCS_ROUTE, REPORTS_ROUTE

if TYPE_CHECKING:
    from seg_pipeline.config import Settings

class DocsRequestHandler(SimpleHTTPRequestHandler):
    """GET and HEAD of files under the routed folders only; every other path is a 404.

    The path after the route goes through ``SimpleHTTPRequestHandler.translate_path`` with ``directory``
    set to that route's folder: it decodes the path once and drops ``..`` segments, so a request never
    leaves the folder; a symlink that points outside it is refused as well."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".woff2": "font/woff2",
        ".ttf": "font/ttf",
        ".otf": "font/otf",
    }

    def __init__(self, *args, roots: Mapping[str, Path], **kwargs):
        self.roots = roots
        super().__init__(*args, **kwargs)

    def _routed(self, path: str) -> tuple[Path, str] | None:
        """(the route's folder, the rest of the still-quoted URL path), or None for any other path."""
        path = urllib.parse.urlsplit(path).path
        route, _, rest = path.lstrip("/").partition("/")
        root = self.roots.get(urllib.parse.unquote(route))
        if root is None or "\x00" in urllib.parse.unquote(path):
            return None
        return root, "/" + rest

    def translate_path(self, path: str) -> str:
        routed = self._routed(path)
        if routed is None:
            return ""
        root, rest = routed
        self.directory = str(root)
        return super().translate_path(rest)

    def send_head(self):
        routed = self._routed(self.path)
        if routed is not None:
            root = os.path.realpath(routed[0])
            target = os.path.realpath(self.translate_path(self.path))
            if target == root or target.startswith(root + os.sep):
                return super().send_head()
        self.send_error(HTTPStatus.NOT_FOUND, "Only /datadocs/ and /reports/ are served here")
        return None

    def end_headers(self) -> None:
        # a new run rewrites index.html and latest.html under the same names
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        """Quiet: `seg-pipeline dev` shares its terminal with the Dagster UI's log."""


class DocsServer(ThreadingHTTPServer):
    """Serves ``roots`` (route -> folder) on ``host``:``port`` from a daemon thread once started."""

    daemon_threads = True

    def __init__(self, roots: Mapping[str, Path], host: str = "127.0.0.1", port: int = 0):
        if ":" in host:
            self.address_family = socket.AF_INET6
        handler = partial(DocsRequestHandler, roots={k: Path(v).resolve() for k, v in roots.items()})
        super().__init__((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> DocsServer:
        # a short poll keeps stop() quick (shutdown waits for the loop to look)
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="docs-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()


def settings_roots(settings: Settings) -> dict[str, Path]:
    return {DATADOCS_ROUTE: settings.datadocs_dir, REPORTS_ROUTE: settings.reports_dir}


@contextlib.contextmanager
def serving(roots: Mapping[str, Path], host: str = "127.0.0.1", port: int = 0) -> Iterator[DocsServer]:
    """A started ``DocsServer``, stopped on exit. Port 0 picks a free one (``server.url`` says which)."""
    server = DocsServer(roots, host, port).start()
    try:
        yield server
    finally:
        server.stop()

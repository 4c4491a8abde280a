"""The extract set in the landing folder: which files a run would read, and whether they changed.

The landing sensor keeps the last set it started a run for as its cursor. A change is judged on
content, not timestamps: files whose size and modification time are unchanged are taken as they were
(no re-hashing every minute), others are hashed, so an extract copied again with the same bytes starts
no run. A set still being written (a file modified within the settle time) is left for a later tick.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

from seg_pipeline.config import Settings
from seg_pipeline.sources.contracts import SOURCE_NAMES
from seg_pipeline.sources.readers import file_sha256


@dataclass(frozen=True)
class ExtractFile:
    source: str
    path: str
    size: int
    mtime_ns: int
    sha256: str


def extract_set(settings: Settings, previous: dict[str, ExtractFile] | None = None) -> dict[str, ExtractFile]:
    """source -> file for every extract a run would read now (configured path or found in the landing folder)."""
    previous = previous or {}
    found = {}
    for source in SOURCE_NAMES:
        path = settings.source_path(source)
        if path is None or not path.is_file():
            continue
        stat = path.stat()
        known = previous.get(source)
        same_file = known is not None and (known.path, known.size, known.mtime_ns) == (
            str(path), stat.st_size, stat.st_mtime_ns,
        )  # fmt: skip
        digest = known.sha256 if same_file else file_sha256(path)
        found[source] = ExtractFile(source, str(path), stat.st_size, stat.st_mtime_ns, digest)
    return found


def fingerprint(files: dict[str, ExtractFile]) -> str:
    """One id for the content of the set: equal sets (same sources, same bytes) give the same id."""
    content = sorted((f.source, f.sha256) for f in files.values())
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:24]


def encode_cursor(files: dict[str, ExtractFile]) -> str:
    return json.dumps({"fingerprint": fingerprint(files), "files": [asdict(f) for f in files.values()]})


def decode_cursor(cursor: str | None) -> tuple[str | None, dict[str, ExtractFile]]:
    if not cursor:
        return None, {}
    data = json.loads(cursor)
    return data["fingerprint"], {f["source"]: ExtractFile(**f) for f in data["files"]}


def still_settling(files: dict[str, ExtractFile], settle_seconds: int, now: float | None = None) -> list[str]:
    """Files modified within the last ``settle_seconds`` (probably still being copied)."""
    now = time.time() if now is None else now
    return [f.path for f in files.values() if now - f.mtime_ns / 1e9 < settle_seconds]

"""The extract set in the landing folder: which files a run would read, and whether they changed.

The landing sensor keeps the last set it started a run for as its cursor. A change is judged on
content, not timestamps: files whose size and modification time are unchanged are taken as they were
(no re-hashing every minute), others are hashed, so an extract copied again with the same bytes starts
no run. A set still being written (a file modified within the settle time) is left for a later tick.

``wait_for_stable_extracts`` is the same idea for a run started by hand: it waits (briefly) until no
extract has changed for ``orchestration.sources_stable_seconds``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from seg_pipeline.config import Settings
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.sources.contracts import SOURCE_NAMES
from seg_pipeline.sources.files import FileState
from seg_pipeline.sources.readers import file_sha256

POLL_SECONDS = 0.25


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


@dataclass(frozen=True)
class Unsettled:
    """An extract that changed within the stable window: what changed and how long ago."""

    path: Path
    changed: str  # "size" or "modification time"
    seconds_ago: float

    def describe(self) -> str:
        return f"{self.path.name} ({self.changed} changed {self.seconds_ago:.1f} s ago)"


class _Watch:
    """The last seen state of each file and when (monotonic clock) it last changed."""

    def __init__(self, paths: list[Path]):
        start = time.monotonic()
        self.states = {path: FileState.of(path) for path in paths}
        # a file's last change is as old as its modification time says (a time in the future counts as now)
        self.changed_at = {
            p: start - max(0.0, time.time() - s.mtime_ns / 1e9) for p, s in self.states.items()
        }
        self.what = dict.fromkeys(paths, "modification time")

    def unsettled(self, window: float) -> list[Unsettled]:
        now = time.monotonic()
        ages = {path: now - changed for path, changed in self.changed_at.items()}
        return [Unsettled(path, self.what[path], age) for path, age in ages.items() if age < window]

    def look_again(self, paths: list[Path]) -> None:
        for path in paths:
            try:
                current = FileState.of(path)
            except FileNotFoundError:
                raise SegPipelineError(
                    f"extract {path} disappeared while waiting for it to be complete. Rerun when the copy "
                    "is in place."
                ) from None
            if current != self.states[path]:
                self.what[path] = "size" if current.size != self.states[path].size else "modification time"
                self.states[path], self.changed_at[path] = current, time.monotonic()


def wait_until_stable(
    paths: list[Path],
    stable_seconds: float,
    timeout_seconds: float,
    on_wait: Callable[[list[Unsettled]], None] | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Return once no file of ``paths`` has changed size or modification time for ``stable_seconds``;
    raise SegPipelineError naming the files still changing after ``timeout_seconds``.

    A file last modified longer ago than the window counts as stable at once (writes move the
    modification time), so a finished set costs no wait. ``on_wait`` hears which files are waited for,
    each time that list changes.
    """
    deadline = time.monotonic() + timeout_seconds
    watch, told = _Watch(paths), []
    while waiting := watch.unsettled(stable_seconds):
        if time.monotonic() >= deadline:
            raise SegPipelineError(
                f"extracts still being written after {timeout_seconds:g} s: "
                f"{', '.join(str(u.path) for u in waiting)} (each changed within the last "
                f"{stable_seconds:g} s). Rerun when the copies have finished, or raise "
                "orchestration.sources_stable_timeout_seconds for slow copies."
            )
        if on_wait is not None and [u.path for u in waiting] != told:
            told = [u.path for u in waiting]
            on_wait(waiting)
        time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))
        watch.look_again([u.path for u in waiting])


def wait_for_stable_extracts(
    settings: Settings, on_wait: Callable[[list[Unsettled]], None] | None = None
) -> None:
    """``wait_until_stable`` over every extract a run would read, with the configured window and timeout."""
    paths = [p for p in map(settings.source_path, SOURCE_NAMES) if p is not None and p.is_file()]
    orchestration = settings.orchestration
    if orchestration.sources_stable_seconds > 0 and paths:
        wait_until_stable(
            paths, orchestration.sources_stable_seconds, orchestration.sources_stable_timeout_seconds, on_wait
        )


def waiting_line(waiting: list[Unsettled]) -> str:
    """One line for a person: which extracts a run waits for."""
    return "Waiting for extracts still being written: " + ", ".join(u.describe() for u in waiting)

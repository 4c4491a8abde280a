"""The committed results file of a benchmark: earlier sizes are kept, the machine is recorded anew."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def open_results(name: str) -> tuple[Path, dict]:
    """``results/<name>.json`` and its data (``{"runs": {size: result}}``), with this machine noted."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    data["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }
    return path, data

"""CLI layer: `seg-pipeline` argument parsing (app.py), what it prints (output.py) and how it launches runs
on the Dagster instance (launch.py). It reaches Dagster through public APIs only."""

from seg_pipeline.cli.app import main

__all__ = ["main"]

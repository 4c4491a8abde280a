"""Defs layer: the Dagster definitions only (assets, checks, jobs, schedules, sensors, resource bindings),
one module per stage, merged in seg_pipeline/definitions.py. Asset bodies read their inputs, call the core,
attach metadata and return; configuration arrives through the settings resource, data through inputs or the
Warehouse resource. It may import the core and the platform, never the CLI.
"""

"""Platform layer: what every stage shares at run time.

The Warehouse resource (table writes, reads of earlier runs, the publish swap), MLflow tracking of both
models, the settings resource, the rescore planner, run control and the Data Docs server. It may import the
core (the stage packages) and Dagster, never the definitions (defs/) or the CLI (cli/).
"""

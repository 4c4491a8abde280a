"""The full_refresh job's own asset and check functions, called directly in dependency order in one process.

No executor, run storage, event log or IO manager: each asset's return value is handed to the next in
memory (Dagster's direct invocation). Timed against `seg-pipeline run` on the same company, this is the
Dagster overhead the benchmark reports. A failed blocking check stops the run, as it would in the job.
Each table is handed on with the dtypes a step of the job reads it with (`warehouse.as_loaded`), so both
compute on identical inputs; that conversion is the IO manager's work in the job and is timed apart here
("conversion_seconds"), not counted in "seconds".

Usage: python benchmarks/direct_run.py CONFIG.yaml
Prints {"seconds": ..., "conversion_seconds": ..., "assets": ..., "steps": {step key: seconds}} as JSON;
step keys are named as in the job (an asset's op name, a check's "<asset>_<check>"), so each step's
overhead can be set beside it.
"""

from __future__ import annotations

import inspect
import json
import sys
import time

import dagster as dg
import pandas as pd

from seg_pipeline.config import load_settings
from seg_pipeline.definitions import build_definitions
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.tracking import MlflowTracking
from seg_pipeline.platform.validations import Validations
from seg_pipeline.platform.warehouse import as_loaded, warehouse_of


def _parameters(definition) -> dict:
    return dict(inspect.signature(definition.op.compute_fn.decorated_fn).parameters)


def _outputs(definition, result) -> dict[dg.AssetKey, object]:
    """Asset key -> value for what one invocation returned (a value, an Output, or a generator of them)."""
    produced = result if inspect.isgenerator(result) or isinstance(result, tuple | list) else [result]
    values = {}
    for item in produced:
        if isinstance(item, dg.Output):
            values[definition.keys_by_output_name[item.output_name]] = item.value
        elif isinstance(item, dg.MaterializeResult):  # a table the step wrote itself (no value handed on)
            values |= dict.fromkeys([item.asset_key] if item.asset_key else definition.keys)
        elif isinstance(item, dg.AssetCheckResult):  # a check the asset runs itself (stores_agree)
            continue
        else:
            values[definition.key] = item
    return values


def _in_dependency_order(graph) -> list:
    """Each asset definition once, after every definition that produces one of its inputs. (The asset keys'
    order is not enough: a definition of several assets can hold one that comes early and read one that
    comes late.)"""
    definitions = {id(graph.get(k).assets_def): graph.get(k).assets_def for k in graph.toposorted_asset_keys}
    pending, ordered, produced = list(definitions.values()), [], set()
    while pending:
        ready = next(d for d in pending if set(d.keys_by_input_name.values()) <= produced)
        pending.remove(ready)
        ordered.append(ready)
        produced |= set(ready.keys)
    return ordered


def run(config: str) -> dict:
    settings = load_settings(config)
    definitions = build_definitions(settings)
    graph = definitions.resolve_asset_graph()
    # the objects the run's resources give the assets (the warehouse without the IO manager's handoff)
    source = PipelineSettings.of(settings)
    source.setup_for_execution(dg.build_init_resource_context())
    warehouse = warehouse_of(settings)
    resources = {"settings": source, "warehouse": warehouse, "mlflow_tracking": MlflowTracking.of(settings),
                 "validations": Validations.of(settings)}  # fmt: skip
    checks_of = {}
    for check in definitions.asset_checks or []:
        for key in check.check_keys:
            checks_of.setdefault(key.asset_key, []).append(check)
    values: dict[dg.AssetKey, object] = {}
    steps: dict[str, float] = {}
    conversion = 0.0
    started = time.perf_counter()
    with dg.instance_for_test() as instance:
        for definition in _in_dependency_order(graph):
            inputs = {
                name: values[k]
                for name, k in definition.keys_by_input_name.items()
                if not definition.op.ins[name].dagster_type.is_nothing
            }  # order-only deps carry no value
            params = _parameters(definition)
            context = dg.build_asset_context(instance=instance)
            args = (context,) if "context" in params else ()
            inputs |= {name: resources[name] for name in params if name in resources}
            step_started = time.perf_counter()
            outputs = _outputs(definition, definition(*args, **inputs))
            steps[definition.op.name] = round(time.perf_counter() - step_started, 2)
            converting = time.perf_counter()
            values |= {k: as_loaded(v) if isinstance(v, pd.DataFrame) else v for k, v in outputs.items()}
            conversion += time.perf_counter() - converting
            for produced in definition.keys:
                for check in checks_of.get(produced, []):
                    params = inspect.signature(check.op.compute_fn.decorated_fn).parameters
                    kwargs = {name: values[k] for name, k in check.keys_by_input_name.items()
                              if not check.op.ins[name].dagster_type.is_nothing}  # fmt: skip
                    kwargs |= {name: resources[name] for name in params if name in resources}
                    if "context" in params:
                        kwargs["context"] = dg.build_asset_check_context(instance=instance)
                    step_started = time.perf_counter()
                    result = check(**kwargs)
                    steps[check.op.name] = round(time.perf_counter() - step_started, 2)
                    if not result.passed and result.severity == dg.AssetCheckSeverity.ERROR:
                        raise SystemExit(
                            f"check {result.check_name or check.name} failed: {result.description}"
                        )
    resources["validations"].build_index()  # as the resource does when a run ends
    seconds = time.perf_counter() - started - conversion
    return {"seconds": round(seconds, 2), "conversion_seconds": round(conversion, 2), "assets": len(values),
            "steps": steps}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1])))

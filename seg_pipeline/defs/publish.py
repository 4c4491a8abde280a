"""Stage 7, published: drift against the last publish, the published tables (one atomic swap per store)
and the segment report.

The published tables are written by the Warehouse resource, not the IO manager: all of them swap in one
transaction per store, which an IO manager (one output at a time) cannot do. They depend on every gate
upstream, so a failed gate leaves the last good publish in place.
"""

import dagster as dg
import pandas as pd

from seg_pipeline.defs.common import current_job_name, current_run_id, io_retry_policy
from seg_pipeline.errors import SegPipelineError
from seg_pipeline.platform.settings import PipelineSettings
from seg_pipeline.platform.warehouse import Warehouse
from seg_pipeline.publish.contract import PUBLISHED_TABLES, TABLES
from seg_pipeline.publish.stores import MONITORING_SCHEMA, PublishUnavailable
from seg_pipeline.publish.writers import StoresDisagree

GROUP = "published"
PUBLISH_POOL = "seg_publish"  # one slot (dagster.yaml): two refreshes never publish at the same time


def published_key(table: str) -> dg.AssetKey:
    """published_churn_scores: one name, so the lineage (which shows a key's last part) never shows two
    churn_scores side by side."""
    return dg.AssetKey(f"{GROUP}_{table}")


def _table_schema(table: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(c.name, c.kind, description=c.description or None,
                           constraints=dg.TableColumnConstraints(nullable=c.nullable))
            for c in TABLES[table]
        ]
    )  # fmt: skip


def _freshness(settings) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=pd.Timedelta(hours=settings.orchestration.freshness_fail_hours).to_pytimedelta(),
        warn_window=pd.Timedelta(hours=settings.orchestration.freshness_warn_hours).to_pytimedelta(),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "duckdb"},
    metadata={"schema": MONITORING_SCHEMA},
    description="Population stability index (PSI) of key features and of the churn score against the "
    "distributions the last good publish saw (monitoring.drift_reference).",
)
def population_drift(
    settings: PipelineSettings,
    warehouse: dg.ResourceParam[Warehouse],
    customer_features: pd.DataFrame,
    churn_scores: pd.DataFrame,
) -> dg.Output[pd.DataFrame]:
    from seg_pipeline.publish.drift import compare
    from seg_pipeline.publish.tables import drift_frame

    cfg = settings.resolved
    reference = warehouse.read_previous("drift_reference", MONITORING_SCHEMA)
    table = compare(drift_frame(customer_features, churn_scores, cfg.monitoring.drift_features), reference,
                    cfg.monitoring.psi_threshold)  # fmt: skip
    metadata = {
        "dagster/row_count": len(table),
        "reference": "none yet (first publish)" if reference is None else
        f"run {reference['run_id'].iloc[0]} as of {pd.Timestamp(reference['as_of'].iloc[0]).date()}",
        "flagged": ", ".join(table.loc[table["flagged"], "feature"]) or "none",
        "psi_threshold": cfg.monitoring.psi_threshold,
        **{f"psi/{row.feature}": float(row.psi) for row in table.itertuples()},
    }  # fmt: skip
    if len(table):
        metadata["psi"] = dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3f"))
    return dg.Output(table, metadata=metadata)


@dg.asset_check(asset=population_drift, blocking=False,
                description="Warns when a key feature or the churn score moved more than "
                "monitoring.psi_threshold (PSI) since the last publish.")  # fmt: skip
def population_drift_within_threshold(settings: PipelineSettings, population_drift: pd.DataFrame):
    threshold = settings.resolved.monitoring.psi_threshold
    flagged = population_drift[population_drift["flagged"]]
    return dg.AssetCheckResult(
        passed=flagged.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"psi_threshold": threshold, "features_compared": len(population_drift),
                  "max_psi": float(population_drift["psi"].max()) if len(population_drift) else 0.0},
        description=None if flagged.empty else "PSI above " + str(threshold) + ": " + ", ".join(
            f"{row.feature} {row.psi:.2f}" for row in flagged.itertuples()),
    )  # fmt: skip


_DESCRIPTIONS = {
    "customer_segments": "Per customer (CRM customer_id): segment, lifecycle stage, micro-segment, churn risk "
    "score and tier, retention-segment flag.",
    "churn_scores": "Per customer: churn probability, risk score, tier, top drivers and model version.",
    "segment_profiles": "Per segment: size, share, value, observed churn, churn risk and tiers, traits.",
    "segment_history": "One row per segment per publish: size, stayed / joined / left, churn risk.",
    "retention_actions": "Per customer of the three action tiers, in order of expected loss: tier, suggested "
    "action, churn probability, value, expected loss and drivers in words (what `seg-pipeline export actions` "
    "writes for the CRM and e-mail tools).",
    "retention_uplift": "Per judged retention list (a publish whose horizon has passed), action tier and campaign: "
    "realized churn of the treatment arm against the control arm, the uplift with its 95 % interval, customers "
    "saved and revenue retained (intention-to-treat; with an interventions extract also the effect on the "
    "contacted).",
    "kpi_history": "One row per publish and headline number: customers, segment sizes, customers and mean churn "
    "probability per tier, revenue at risk, retention-list size (the report's trend charts).",
}


# what each published table is made of (lineage in the UI); the drift reference is written with them
_CUSTOMERS = ["clean_customers", "churn_scores", "action_tiers", "customer_clusters", "lifecycle_stage"]
_LINEAGE = {
    "customer_segments": [*_CUSTOMERS, "retention_segment"],
    "churn_scores": [
        "clean_customers",
        "churn_scores",
        "action_tiers",
        "customer_features",
        "population_drift",
    ],
    "segment_profiles": [*_CUSTOMERS, "segment_profiles"],
    "segment_history": [*_CUSTOMERS, "segment_profiles"],
    "retention_actions": [*_CUSTOMERS, "retention_segment"],
    "retention_uplift": ["realized_uplift"],
    "kpi_history": [*_CUSTOMERS, "segment_profiles"],
}


# what the publish appends to the score history and outcome tables of the monitoring schema (warehouse only);
# shown in the lineage as inputs of published_churn_scores, whose rows the score history keeps
_MONITORED = ["churn_model", "realized_outcomes", "realized_calibration", "erasure_index"]

# the check that both stores hold the same run, on the table consumers read first
STORES_AGREE, AGREE_ON = "stores_agree", "customer_segments"

# of the CRM only the keys are published and shown in the report
CUSTOMER_IDS = ["customer_key", "customer_id"]


def published_tables_asset(settings) -> dg.AssetsDefinition:
    """The published tables as one step; built from the settings for the freshness windows."""
    specs = [
        dg.AssetSpec(published_key(t), group_name=GROUP, description=_DESCRIPTIONS[t], kinds={"duckdb", "postgres"},
                     deps=[*_LINEAGE[t], *(_MONITORED if t == "churn_scores" else [])], metadata={"dagster/column_schema": _table_schema(t)},
                     freshness_policy=_freshness(settings))
        for t in PUBLISHED_TABLES
    ]  # fmt: skip

    @dg.multi_asset(
        name="published_tables",
        specs=specs,
        ins={**{name: dg.AssetIn(name) for name in dict.fromkeys(d for deps in _LINEAGE.values() for d in deps)},
             **{name: dg.AssetIn(name) for name in _MONITORED}},
        pool=PUBLISH_POOL,
        retry_policy=io_retry_policy(settings),
        check_specs=[dg.AssetCheckSpec(
            STORES_AGREE, asset=published_key(AGREE_ON),
            description="Every store holds this run's published tables (PostgreSQL and the warehouse). Fails "
            "when a publish stopped between the two commits and could not be undone; `seg-pipeline status` or "
            "the next run puts PostgreSQL back.")],
        description="Writes the published tables as new tables and swaps them in, in one transaction per store "
        "(PostgreSQL first when configured, then the warehouse); in the warehouse's transaction it also appends "
        "this publish's scores and arms (monitoring.score_history, scored_runs) and the outcomes this run judged.",
    )  # fmt: skip
    def published_tables(context: dg.AssetExecutionContext, settings: PipelineSettings,
                         warehouse: dg.ResourceParam[Warehouse], **inputs: pd.DataFrame):  # fmt: skip
        from seg_pipeline.publish import tables
        from seg_pipeline.publish.drift import build_reference

        cfg = settings.resolved
        as_of = settings.as_of
        run_id = current_run_id(context)
        ids = inputs["clean_customers"][CUSTOMER_IDS]
        scores = inputs["churn_scores"]
        customers = tables.scored_customers(ids, scores, inputs["action_tiers"], inputs["customer_clusters"],
                                            inputs["lifecycle_stage"])  # fmt: skip
        segments = tables.customer_segments(customers, as_of, run_id)
        profiles = tables.segment_profiles(inputs["segment_profiles"], customers, as_of, run_id)
        previous = warehouse.read_previous("customer_segments")
        moved = tables.migration_since(previous, segments)
        history = tables.segment_history(warehouse.read_previous("segment_history"), moved,
                                         previous is None, segments, profiles, as_of, run_id)  # fmt: skip
        kpis = tables.kpi_history(warehouse.read_previous("kpi_history"), customers, profiles, as_of, run_id)
        drift_columns = tables.drift_frame(inputs["customer_features"], scores, cfg.monitoring.drift_features)
        reference = build_reference(
            drift_columns, list(drift_columns.columns), as_of, run_id, cfg.monitoring.psi_bins
        )
        monitoring = {"drift_reference": reference, "publish_migration": moved,
                      **_score_history(cfg, warehouse, inputs, customers, as_of, run_id)}  # fmt: skip
        erased = _erased_history_keys(cfg, warehouse, inputs["erasure_index"])
        frames = {"customer_segments": segments, "churn_scores": tables.churn_scores(customers, as_of, run_id),
                  "segment_profiles": profiles, "segment_history": history,
                  "retention_actions": tables.retention_actions(customers, as_of, run_id), "kpi_history": kpis,
                  "retention_uplift": tables.retention_uplift(warehouse.read_previous("retention_uplift"),
                                                              inputs["realized_uplift"], as_of, run_id)}  # fmt: skip
        try:
            result = warehouse.publish(frames, monitoring, run_id, erase_keys=erased)
        except PublishUnavailable as exc:
            raise dg.Failure(str(exc), allow_retries=True) from None
        except StoresDisagree as exc:  # the check shows it in the UI until a publish brings them together
            yield dg.AssetCheckResult(asset_key=published_key(AGREE_ON), check_name=STORES_AGREE, passed=False,
                                      description=str(exc))  # fmt: skip
            raise dg.Failure(str(exc), allow_retries=False) from None
        except SegPipelineError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None
        stores = result.stores
        if result.resolved_earlier:
            context.log.warning(f"before publishing: {result.resolved_earlier}")
        if erased:
            context.log.info(f"score history: the rows of {len(erased):,} erased customer(s) deleted")
        context.log.info(f"published {', '.join(f'{n} ({len(f):,} rows)' for n, f in frames.items())} "
                         f"to {' and '.join(stores)}")  # fmt: skip
        live = warehouse.live_run_ids()
        yield dg.AssetCheckResult(
            asset_key=published_key(AGREE_ON), check_name=STORES_AGREE, passed=set(live.values()) == {run_id},
            metadata={**{f"{store}_run": str(found) for store, found in live.items()},
                      **({"resolved_before_publishing": result.resolved_earlier} if result.resolved_earlier else {})},
            description=None if set(live.values()) == {run_id} else f"the stores hold different runs: {live}",
        )  # fmt: skip
        unassigned = int(segments["segment_id"].isna().sum())
        for name, frame in frames.items():
            yield dg.MaterializeResult(
                asset_key=published_key(name),
                metadata={
                    "dagster/row_count": len(frame), "dagster/table_name": f"{GROUP}.{name}",
                    "stores": ", ".join(stores), "run_id": run_id, "as_of": as_of.isoformat(),
                    **({"customers_without_segment": unassigned} if name == "customer_segments" else {}),
                },
            )  # fmt: skip

    return published_tables


def _score_history(cfg, warehouse: Warehouse, inputs: dict, customers: pd.DataFrame, as_of, run_id: str) -> dict:
    """The rows this publish appends to the monitoring schema: its scores (score_history, scored_runs) and
    the outcomes of earlier publishes judged by this run (score_outcomes, score_calibration)."""
    from seg_pipeline.outcomes.history import (
        HISTORY_TYPES,
        SCORED_RUN_TYPES,
        score_history_rows,
        scored_run_row,
    )
    from seg_pipeline.outcomes.realized import CALIBRATION_TYPES, OUTCOME_TYPES
    from seg_pipeline.publish.stores import Appended

    history = score_history_rows(customers, inputs["customer_features"], as_of, run_id)
    runs = warehouse.read_previous("scored_runs", MONITORING_SCHEMA)
    sequence = 1 if runs is None or runs.empty else int(runs["publish_sequence"].max()) + 1
    model = inputs["churn_model"].iloc[0]
    scored_by = (
        str(customers["scored_by"].iloc[0]) if "scored_by" in customers and len(customers) else "model"
    )
    run = scored_run_row(
        run_id=run_id, as_of=as_of, publish_sequence=sequence, history=history,
        horizon_days=cfg.churn.horizon_days, label=cfg.churn.label, scored_by=scored_by,
        holdout_roc_auc=float(model["holdout_roc_auc"]) if pd.notna(model.get("holdout_roc_auc")) else None,
        control_share=cfg.actions.control.share, control_campaign=cfg.actions.control.campaign,
    )  # fmt: skip
    appended = {"score_history": Appended(history, "run_id", HISTORY_TYPES),
                "scored_runs": Appended(run, "run_id", SCORED_RUN_TYPES)}  # fmt: skip
    if len(inputs["realized_outcomes"]):
        appended["score_outcomes"] = Appended(inputs["realized_outcomes"], "scored_run_id", OUTCOME_TYPES)
        appended["score_calibration"] = Appended(
            inputs["realized_calibration"], "scored_run_id", CALIBRATION_TYPES
        )
    return appended


def _erased_history_keys(cfg, warehouse: Warehouse, erasure_index: pd.DataFrame) -> list[str]:
    """The score history's keys of customers with an erasure request: their rows leave it at this publish."""
    from seg_pipeline.cleaning.privacy import resolve_key
    from seg_pipeline.outcomes.history import erased_history_keys

    if erasure_index.empty:
        return []
    keys = warehouse.distinct_values(MONITORING_SCHEMA, "score_history", "customer_key")
    return erased_history_keys(
        keys, erasure_index, resolve_key(cfg.privacy.pseudonymization_key_env, cfg.home)
    )


@dg.asset(
    group_name=GROUP,
    kinds={"html"},
    deps=[published_key(t) for t in PUBLISHED_TABLES],
    ins={"clean_customers": dg.AssetIn(metadata={"columns": CUSTOMER_IDS})},  # not every CRM attribute
    description="One self-contained HTML report per run (plots embedded): segments and profiles, lifecycle, "
    "churn risk by segment, the retention list and action plan, trends across runs, migration, model metrics "
    "and drift.",
)
def segment_report(
    context: dg.AssetExecutionContext,
    settings: PipelineSettings,
    warehouse: dg.ResourceParam[Warehouse],
    clean_customers: pd.DataFrame,
    retention_segment: pd.DataFrame,
    action_tiers: pd.DataFrame,
    churn_scores: pd.DataFrame,
    churn_model: pd.DataFrame,
    segmentation_candidates: pd.DataFrame,
    population_drift: pd.DataFrame,
    customer_id_map: pd.DataFrame,
    identity_review: pd.DataFrame,
) -> dg.MaterializeResult:
    from seg_pipeline.churn.actions import action_plan, ranked_by
    from seg_pipeline.links import datadocs_url, report_url
    from seg_pipeline.publish.report import ReportInputs, summary_markdown, write_report

    cfg = settings.resolved
    # the tables as this run published them (the report shows what consumers read)
    published = {
        t: warehouse.read_previous(t) for t in ("customer_segments", "segment_profiles", "kpi_history", "retention_uplift")
    }
    monitored = {
        t: _or_empty(warehouse.read_previous(t, MONITORING_SCHEMA))
        for t in ("scored_runs", "score_outcomes", "score_calibration")
    }
    probability = action_tiers[["customer_key"]].merge(
        churn_scores[["customer_key", "churn_probability"]], on="customer_key", how="left"
    )["churn_probability"]
    # since the previous publish, for full_refresh and rescore alike (empty on the first publish)
    migration = warehouse.read_previous("publish_migration", MONITORING_SCHEMA)
    ids = clean_customers[CUSTOMER_IDS]
    retention = retention_segment.merge(ids, on="customer_key", how="left")[
        ["customer_id", "action_rank", "risk_tier", "segment_name", "lifecycle_stage", "churn_probability",
         "churn_risk_score", "value_365d", "expected_loss", "top_drivers", "suggested_action", "arm"]]  # fmt: skip
    model_row = churn_model.iloc[0].to_dict()
    model = {k: model_row.get(k) for k in (
        "candidate", "promoted", "gate_reason", "champion_version", "holdout_roc_auc", "holdout_pr_auc",
        "holdout_brier", "holdout_lift_top_decile", "holdout_f1", "threshold", "selected_candidate", "model_kind",
        "beats_baselines", "best_baseline")}  # fmt: skip
    model |= {
        k: v for k, v in model_row.items() if k.startswith("baseline_")
    }  # verdict, metric, each baseline
    model["model_version"] = model_row.get("version")
    model["mlflow_run_url"] = _present(model_row.get("mlflow_run_url"))
    segmentation = _segmentation_summary(segmentation_candidates)
    links = {
        "Dagster run": f"http://127.0.0.1:3000/runs/{current_run_id(context)}",
        "Data Docs": datadocs_url(cfg),
        **({"MLflow churn run": model["mlflow_run_url"]} if model["mlflow_run_url"] else {}),
        **(
            {"MLflow segmentation run": segmentation["mlflow_run_url"]}
            if segmentation["mlflow_run_url"]
            else {}
        ),
    }
    inputs = ReportInputs(
        run_id=current_run_id(context), job=current_job_name(context), as_of=settings.as_of,
        segment_profiles=published["segment_profiles"], customer_segments=published["customer_segments"],
        retention=retention, migration=migration, first_run=migration.empty, model=model,
        segmentation=segmentation, drift=population_drift, drift_threshold=cfg.monitoring.psi_threshold,
        links=links, link_files={"Data Docs": str((cfg.datadocs_dir / "index.html").resolve())},
        merged_by_rule=customer_id_map["match_rule"].value_counts().drop("survivor", errors="ignore").to_dict(),
        identity_review=identity_review, currency=cfg.report.currency, locale=cfg.report.locale,
        action_plan=action_plan(action_tiers, probability, cfg.actions), ranked_by=ranked_by(action_tiers),
        kpi_history=published["kpi_history"], trend_runs=cfg.report.trend_runs,
        scored_runs=monitored["scored_runs"], score_outcomes=monitored["score_outcomes"],
        score_calibration=monitored["score_calibration"], retention_uplift=_or_empty(published["retention_uplift"]),
    )  # fmt: skip
    path = write_report(inputs, cfg.reports_dir).resolve()
    return dg.MaterializeResult(
        metadata={
            # served by `seg-pipeline dev` (browsers refuse file:// links from the UI); the paths without it
            "report": dg.MetadataValue.url(report_url(cfg, path)),
            "report_path": dg.MetadataValue.path(str(path)),
            "latest": dg.MetadataValue.url(report_url(cfg)),
            "latest_path": dg.MetadataValue.path(str(path.with_name("latest.html"))),
            "summary": dg.MetadataValue.md(summary_markdown(inputs)),
        }
    )


def _or_empty(frame: pd.DataFrame | None) -> pd.DataFrame:
    return pd.DataFrame() if frame is None else frame


def _present(value):
    """None for a missing value (a table written before the column existed reads it as NaN)."""
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _segmentation_summary(candidates: pd.DataFrame) -> dict:
    """The selected candidate and the fit's notes, as the segmentation step recorded them with its table."""
    chosen = candidates[candidates["selected"].eq(True)]
    row = chosen.iloc[0] if len(chosen) else pd.Series(dtype=object)
    return {
        "selected": _present(row.get("candidate")),
        "silhouette": _present(row.get("silhouette")),
        "stability": _present(row.get("stability")),
        "single_segment": _present(row.get("fit_single_segment")),
        "notes": _present(row.get("fit_notes")),
        "mlflow_run_url": _present(row.get("mlflow_run_url")),
    }


publish_checks = [population_drift_within_threshold]


def definitions(settings) -> dg.Definitions:
    """Drift, the published tables (built from the settings for freshness and retries) and the report."""
    return dg.Definitions(
        assets=[population_drift, published_tables_asset(settings), segment_report], asset_checks=publish_checks
    )

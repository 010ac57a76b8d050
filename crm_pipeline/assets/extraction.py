"""Raw extraction assets: one per entity, every tenant database unioned into DuckDB.

Monthly entities are partitioned by month (a backfill of many months is one run that
reads the whole range per database); customers are refreshed whole.
"""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from crm_pipeline.assets.metadata import databases_table, preview_markdown, zero_check
from crm_pipeline.entities import ENTITIES, PARTITION_COLUMN
from crm_pipeline.partitions import monthly_partitions, partition_label, window_of
from crm_pipeline.resources import SourceResource, WarehouseResource
from crm_pipeline.warehouse.extract import ExtractionReport, extract_entity
from crm_pipeline.warehouse.store import Window, scalar

WAREHOUSE_POOL = "duckdb"
EXTRACTION_GROUP = "extraction"


def _checks(report: ExtractionReport, duplicates: int) -> list[AssetCheckResult]:
    """No duplicate keys in the partition; every selected database extracted."""
    failed = report.summary.failed
    return [
        zero_check("no_duplicate_keys", duplicates, "duplicate_keys"),
        AssetCheckResult(
            check_name="every_database_present",
            passed=not failed,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "selected": len(report.databases),
                "missing": MetadataValue.json([r.database for r in failed]),
            },
        ),
    ]


def _where(window: Window | None) -> tuple[str, list[object]]:
    if window is None:
        return "TRUE", []
    return f"{PARTITION_COLUMN} >= ? AND {PARTITION_COLUMN} < ?", [window.start, window.end]


def build_raw_asset(entity_name: str) -> AssetsDefinition:
    """The extraction asset of one entity (``raw_<entity>``) with its checks."""
    entity = ENTITIES[entity_name]
    asset_name = f"raw_{entity_name}"

    @asset(
        name=asset_name,
        group_name=EXTRACTION_GROUP,
        partitions_def=monthly_partitions if entity.monthly else None,
        backfill_policy=BackfillPolicy.single_run() if entity.monthly else None,
        pool=WAREHOUSE_POOL,
        kinds={"duckdb", "sql"},
        metadata={"table": f"raw.{entity_name}", "partition_expr": PARTITION_COLUMN}
        if entity.monthly
        else {"table": f"raw.{entity_name}"},
        check_specs=[
            AssetCheckSpec("no_duplicate_keys", asset=asset_name),
            AssetCheckSpec("every_database_present", asset=asset_name),
        ],
        description=f"{entity_name} from every selected database of every source, tagged with source_db.",
    )
    def _raw(
        context: AssetExecutionContext, source: SourceResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        if entity.monthly:
            window = window_of(context.partition_time_window)
            label = partition_label(context.partition_keys)
        else:
            window, label = None, "all"
        store = warehouse.open(context.log)
        report = extract_entity(
            source.extraction_sources(entity_name, context.log),
            store,
            entity_name,
            context.run.run_id,
            label,
            window,
            context.log,
            first_day=monthly_partitions.start.date(),
        )
        where, params = _where(window)
        with store.connect() as con:
            duplicates = scalar(
                con,
                f"SELECT count(*) FROM (SELECT source_db, {entity.key} FROM raw.{entity_name} "
                f"WHERE {where} GROUP BY ALL HAVING count(*) > 1)",
                params,
            )
            total = scalar(con, f"SELECT count(*) FROM raw.{entity_name} WHERE {where}", params)
            preview = preview_markdown(
                con, f"SELECT * FROM raw.{entity_name} WHERE {where} ORDER BY ALL", params
            )
        return MaterializeResult(
            metadata={
                "dagster/row_count": total,
                "rows_inserted": report.inserted,
                "rows_replaced": report.deleted,
                "rows_rejected": report.rejected,
                "databases": len(report.databases),
                "databases_failed": len(report.summary.failed),
                "new_customers": len(report.new_customer_keys),
                **(
                    {"rows_before_first_partition": MetadataValue.json(report.rows_before_start)}
                    if report.rows_before_start
                    else {}
                ),
                "duration_s": round(report.seconds, 2),
                "per_database": databases_table(report.summary),
                "preview": preview,
            },
            check_results=_checks(report, duplicates),
        )

    return _raw


raw_assets: list[AssetsDefinition] = [build_raw_asset(name) for name in ENTITIES]

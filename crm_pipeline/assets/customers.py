"""Per-customer assets: partitioned by the dynamic ``customer`` partitions."""

from dagster import (
    AllPartitionMapping,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from crm_pipeline.assets.extraction import WAREHOUSE_POOL, raw_assets
from crm_pipeline.assets.metadata import preview_markdown
from crm_pipeline.features.activity import write_customer_activity
from crm_pipeline.partitions import customer_partitions, partition_label
from crm_pipeline.resources import WarehouseResource


@asset(
    partitions_def=customer_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    group_name="customers",
    kinds={"duckdb"},
    deps=[AssetDep(a.key, partition_mapping=AllPartitionMapping()) for a in raw_assets],
    metadata={"table": "customer_activity", "partition_expr": "partition_key"},
)
def customer_activity(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    """Activity profile per customer (first/last event, volumes, counterparts, CRM counts).

    A backfill over many customers is one run and one SQL statement for all of them.
    """
    keys = list(context.partition_keys)
    context.log.info("customer_activity for %s", partition_label(keys))
    with warehouse.open(context.log).connect() as con:
        written = write_customer_activity(con, keys, context.run.run_id)
        preview = preview_markdown(
            con,
            "SELECT * EXCLUDE (run_id, updated_at) FROM customer_activity "
            "WHERE partition_key IN (SELECT partition_key FROM run_customers) ORDER BY 1",
            [],
        )
    return MaterializeResult(
        metadata={"dagster/row_count": written, "customers": len(keys), "preview": preview}
    )

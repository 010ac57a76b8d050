"""Per-customer assets: partitioned by the dynamic ``customer`` partitions."""

import math
import time
from collections.abc import Callable, Sequence

from dagster import (
    AllPartitionMapping,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MaterializeResult,
    asset,
)

from crm_pipeline.assets.extraction import WAREHOUSE_POOL, raw_assets
from crm_pipeline.assets.metadata import preview_markdown
from crm_pipeline.features.activity import write_customer_activity
from crm_pipeline.partitions import customer_partitions, partition_label
from crm_pipeline.resources import WarehouseResource
from crm_pipeline.warehouse.customer_tables import Progress


def every_partition_of(assets: Sequence[AssetsDefinition]) -> list[AssetDep]:
    """Dependencies on all partitions of ``assets``: every month feeds every customer."""
    return [AssetDep(a.key, partition_mapping=AllPartitionMapping()) for a in assets]


def customer_asset(
    tables: str, group: str, deps: Sequence[AssetDep | AssetsDefinition], checks: Sequence[str] = ()
) -> Callable[[Callable[..., MaterializeResult]], AssetsDefinition]:
    """Decorator of a customer-partitioned warehouse asset: a backfill over many customers is one
    run (single-run policy) in the ``duckdb`` pool; ``checks`` name its asset checks."""

    def decorate(fn: Callable[..., MaterializeResult]) -> AssetsDefinition:
        return asset(
            name=fn.__name__,
            partitions_def=customer_partitions,
            backfill_policy=BackfillPolicy.single_run(),
            pool=WAREHOUSE_POOL,
            group_name=group,
            kinds={"duckdb"},
            deps=list(deps),
            metadata={"table": tables, "partition_expr": "partition_key"},
            check_specs=[AssetCheckSpec(check, asset=fn.__name__) for check in checks],
        )(fn)

    return decorate


#: Seconds between two progress lines of one step: a per-customer loop does not flood the log.
PROGRESS_EVERY_S = 10.0


def log_progress(
    context: AssetExecutionContext, what: str, clock: Callable[[], float] = time.monotonic
) -> Progress:
    """A progress callback that writes ``what: done/total customers`` to the run log: the first
    and the last call, and in between at most one line every ``PROGRESS_EVERY_S`` seconds."""
    last_line = -math.inf

    def report(done: int, total: int) -> None:
        nonlocal last_line
        now = clock()
        if done >= total or now - last_line >= PROGRESS_EVERY_S:
            last_line = now
            context.log.info("%s: %d/%d customers written", what, done, total)

    return report


@customer_asset("customer_activity", "customers", every_partition_of(raw_assets))
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

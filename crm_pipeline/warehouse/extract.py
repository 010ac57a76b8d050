"""Extract one entity partition from every source database into the warehouse."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from crm_pipeline.entities import ENTITIES, PARTITION_COLUMN
from crm_pipeline.sources.runner import EachDbRunner, ExtractionError, RunSummary
from crm_pipeline.warehouse.store import (
    PartitionWriter,
    Warehouse,
    Window,
    record_extraction,
    refresh_customer_keys,
)


@dataclass
class ExtractionReport:
    """The outcome of one entity partition: per-database results and write counts."""

    entity: str
    partition: str
    databases: list[str]
    summary: RunSummary
    inserted: int
    deleted: int
    rejected: int
    new_customer_keys: list[str]
    seconds: float


def extract_entity(
    runner: EachDbRunner,
    warehouse: Warehouse,
    entity: str,
    query: str,
    run_id: str,
    partition: str,
    window: Window | None = None,
    log: logging.Logger | None = None,
) -> ExtractionReport:
    """Run ``query`` in every selected database and replace the partition's rows.

    Monthly entities are cut on ``event_date`` within ``window``; the customers entity is
    replaced whole per database. New customers get partition keys in the same step. On
    failure under the ``fail`` policy nothing is written but the extraction log.
    """
    log = log or logging.getLogger(__name__)
    started = time.perf_counter()
    spec = ENTITIES[entity]
    if spec.monthly != (window is not None):
        raise ValueError(f"{entity}: a window is {'required' if spec.monthly else 'not allowed'}")
    databases = runner.databases()
    log.info("%s %s: %d database(s) selected", entity, partition, len(databases))
    params: list[object] = []
    if window is not None:
        query = runner.dialect.date_window_query(query, PARTITION_COLUMN)
        params = [runner.dialect.date_param(window.start), runner.dialect.date_param(window.end)]
    with warehouse.connect() as con:
        writer = PartitionWriter(con, entity, run_id, partition, window)
        try:
            summary = runner.run(query, writer, params, databases)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, ExtractionError):
                record_extraction(con, run_id, entity, partition, exc.summary.results)
            raise
        counts = writer.commit(summary.succeeded)
        record_extraction(con, run_id, entity, partition, summary.results)
        new_keys = refresh_customer_keys(con, run_id)
    report = ExtractionReport(
        entity,
        partition,
        databases,
        summary,
        counts["inserted"],
        counts["deleted"],
        counts["rejected"],
        new_keys,
        time.perf_counter() - started,
    )
    log.info(
        "%s %s: %d rows inserted, %d replaced, %d rejected, %d database(s) failed, in %.1fs",
        entity,
        partition,
        report.inserted,
        report.deleted,
        report.rejected,
        len(summary.failed),
        report.seconds,
    )
    return report

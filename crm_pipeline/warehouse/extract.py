"""Extract one entity partition from every source database into the warehouse."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from crm_pipeline.entities import ENTITIES, PARTITION_COLUMN
from crm_pipeline.sources.runner import (
    EachDbRunner,
    ExtractionError,
    RunSummary,
    run_each_source,
    select_databases,
)
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


def _windowed(
    runner: EachDbRunner, query: str, window: Window | None
) -> tuple[EachDbRunner, str, list[object]]:
    """``(runner, query, params)`` with the query cut to ``window`` in the runner's dialect."""
    if window is None:
        return runner, query, []
    dialect = runner.dialect
    return (
        runner,
        dialect.date_window_query(query, PARTITION_COLUMN),
        [dialect.date_param(window.start), dialect.date_param(window.end)],
    )


def extract_entity(
    sources: Sequence[tuple[EachDbRunner, str]],
    warehouse: Warehouse,
    entity: str,
    run_id: str,
    partition: str,
    window: Window | None = None,
    log: logging.Logger | None = None,
) -> ExtractionReport:
    """Run each source's query in every database it selects and replace the partition's rows.

    ``sources`` pairs each source's runner with its SQL for ``entity``; all of them land in one
    write, so the partition is replaced once, from every source together. Monthly entities are
    cut on ``event_date`` within ``window``; the customers entity is replaced whole per database.
    New customers get partition keys in the same step. On failure under the ``fail`` policy
    nothing is written but the extraction log.
    """
    log = log or logging.getLogger(__name__)
    started = time.perf_counter()
    spec = ENTITIES[entity]
    if spec.monthly != (window is not None):
        raise ValueError(f"{entity}: a window is {'required' if spec.monthly else 'not allowed'}")
    selected = select_databases([runner for runner, _ in sources])
    databases = [name for names in selected for name in names]
    log.info(
        "%s %s: %d database(s) selected in %d source(s)", entity, partition, len(databases), len(sources)
    )
    runs = [_windowed(runner, query, window) for runner, query in sources]
    with warehouse.connect() as con:
        writer = PartitionWriter(con, entity, run_id, partition, window)
        try:
            summary = run_each_source(runs, writer, selected)
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

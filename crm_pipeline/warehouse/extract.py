"""Extract one entity partition from every source database into the warehouse."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import pyarrow as pa

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
    #: Rows per database dated before the first partition (counted in that partition's runs only):
    #: no partition extracts them.
    rows_before_start: dict[str, int] = field(default_factory=dict)


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
    first_day: date | None = None,
) -> ExtractionReport:
    """Run each source's query in every database it selects and replace the partition's rows.

    ``sources`` pairs each source's runner with its SQL for ``entity``; all of them land in one
    write, so the partition is replaced once, from every source together. Monthly entities are
    cut on ``event_date`` within ``window``; the customers entity is replaced whole per database.
    New customers get partition keys in the same step. On failure under the ``fail`` policy
    nothing is written but the extraction log. When ``window`` starts at ``first_day`` (the
    first partition's), rows dated earlier are counted per database and named in a warning:
    no partition ever extracts them.
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
    before: dict[str, int] = {}
    if window is not None and first_day is not None and window.start <= first_day:
        loaded = set(summary.succeeded)
        before = count_rows_before(
            sources, [[n for n in ns if n in loaded] for ns in selected], first_day, entity, log
        )
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
        before,
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


class _RowCounts:
    """A batch sink that adds up the first column per database (a count query's result)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def write(self, database: str, batch: pa.RecordBatch) -> None:
        """Add the batch's counts to the database's."""
        added = sum(int(n or 0) for n in batch.column(0).to_pylist())
        self.counts[database] = self.counts.get(database, 0) + added

    def discard(self, database: str) -> None:
        """Forget a database whose query failed: no count rather than part of one."""
        self.counts.pop(database, None)


def count_rows_before(
    sources: Sequence[tuple[EachDbRunner, str]],
    selected: Sequence[Sequence[str]],
    first_day: date,
    entity: str,
    log: logging.Logger,
) -> dict[str, int]:
    """Rows per database dated before ``first_day``, the start of the first partition: rows no
    partition extracts. A warning names the databases and says how to load them. The count is
    advice: a database that fails it is logged and left out, the extraction stands."""
    runs = [
        (r, r.dialect.count_before_query(query, PARTITION_COLUMN), [r.dialect.date_param(first_day)])
        for r, query in sources
    ]
    sink = _RowCounts()
    pairs = [(run, names) for run, names in zip(runs, selected, strict=True) if names]
    partial = ""
    try:
        run_each_source([run for run, _ in pairs], sink, [names for _, names in pairs])
    except ExtractionError as exc:
        partial = " (counting stopped early: these counts are partial)"
        log.warning("%s: could not count the rows before %s in every database: %s", entity, first_day, exc)
    before = {name: n for name, n in sorted(sink.counts.items()) if n}
    if before:
        log.warning(
            "%s: %d rows in %d database(s) are dated before %s, the first partition, and no partition "
            "extracts them (set partitions.start earlier to load them)%s: %s",
            entity,
            sum(before.values()),
            len(before),
            first_day,
            partial,
            ", ".join(f"{name} ({n})" for name, n in before.items()),
        )
    return before

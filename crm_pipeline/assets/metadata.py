"""Metadata the assets show in the Dagster UI: per-database tables and previews."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, MetadataValue, TableColumn, TableRecord, TableSchema

from crm_pipeline.sources.runner import RunSummary

PREVIEW_ROWS = 10

DATABASE_TABLE_SCHEMA = TableSchema(
    columns=[
        TableColumn("database", "string"),
        TableColumn("status", "string"),
        TableColumn("rows", "int"),
        TableColumn("seconds", "float"),
        TableColumn("error", "string"),
    ]
)


def databases_table(summary: RunSummary) -> MetadataValue:
    """Rows, duration and error of every database, as a table in the UI."""
    return MetadataValue.table(
        [
            TableRecord(
                {
                    "database": r.database,
                    "status": r.status,
                    "rows": r.rows,
                    "seconds": round(r.seconds, 3),
                    "error": r.error or "",
                }
            )
            for r in summary.results
        ],
        schema=DATABASE_TABLE_SCHEMA,
    )


#: Dagster stores a run's metadata once for every partition it materialized: a backfill of 5,000
#: customers would store each plot (about 75 KB) 5,000 times, 2 GB for regular_patterns' six.
#: Plots go inline for runs of up to this many customers (the demo's 168 keep theirs).
INLINE_PLOT_CUSTOMERS = 200


def inline_plots(
    keys: Sequence[str],
    render: Callable[[], str],
    elsewhere: str = "materialize a few customers to see theirs",
) -> MetadataValue:
    """``render()``'s markdown (PNG plots) for a run of up to ``INLINE_PLOT_CUSTOMERS`` customers;
    for a bigger run, without rendering, a note saying why the plots were left out and, in
    ``elsewhere``, where to find them."""
    if len(keys) <= INLINE_PLOT_CUSTOMERS:
        return MetadataValue.md(render())
    return MetadataValue.md(
        f"_{len(keys):,} customers in this run: plots are inline for runs of up to {INLINE_PLOT_CUSTOMERS} "
        f"customers, because Dagster stores this metadata once for every customer partition; {elsewhere}._"
    )


def report_folder(warehouse_path: str | Path, *parts: str) -> Path:
    """Where an asset writes files a user opens (HTML reports, plots): ``reports/`` beside the
    warehouse file."""
    return Path(warehouse_path).resolve().parent.joinpath("reports", *parts)


def preview_markdown(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> MetadataValue:
    """The first rows of ``sql`` as a markdown table."""
    frame = con.execute(f"{sql} LIMIT {PREVIEW_ROWS}", params).df()
    if frame.empty:
        return MetadataValue.md("_no rows_")
    return MetadataValue.md(frame.to_markdown(index=False))


def rows_markdown(rows: list[dict[str, object]]) -> str:
    """Rows (column -> value) as a markdown table."""
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_none_"


def zero_check(
    name: str, found: int, what: str, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR
) -> AssetCheckResult:
    """A check that passes when ``found`` (offending rows or customers, named ``what``) is zero."""
    return AssetCheckResult(check_name=name, passed=found == 0, severity=severity, metadata={what: found})

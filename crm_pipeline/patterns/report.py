"""Pattern plot files beside the warehouse: every run customer's plot, and an index page.

Dagster keeps one metadata entry for all the customer partitions of a single-run backfill, so
a bulk run cannot show each customer's plot in that customer's partition. The files can:
``reports/patterns/<customer>.png`` always holds the customer's latest plot, and ``index.html``
lists every plotted customer with its cyclic days and trends.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import duckdb
from joblib import Parallel, delayed

from crm_pipeline.patterns.plots import PatternData, PatternPlotter, load_pattern_data
from crm_pipeline.warehouse.customer_tables import Progress
from crm_pipeline.warehouse.keys import customer_file_name
from crm_pipeline.workers import worker_deaths

PLOT_INDEX_SQL = (Path(__file__).parent / "sql" / "plot_index.sql").read_text()
INDEX = "index.html"
#: Customers one worker task draws: enough to pay for the task, few enough to share the work.
PLOTS_PER_TASK = 32


#: The run's customers, those with the most evidence of a pattern (significant monthly trends and
#: cyclic days) first: the ones worth a plot in the run's metadata.
MOST_PATTERNED_SQL = """
SELECT r.partition_key
FROM run_customers AS r
LEFT JOIN (SELECT partition_key, count(*) AS n FROM pattern_monthly_trend WHERE significant GROUP BY 1) AS t
       USING (partition_key)
LEFT JOIN (SELECT partition_key, count(*) AS n FROM pattern_periodicity WHERE cyclic GROUP BY 1) AS p
       USING (partition_key)
ORDER BY coalesce(t.n, 0) + coalesce(p.n, 0) DESC, r.partition_key
LIMIT ?
"""


def most_patterned(con: duckdb.DuckDBPyConnection, limit: int) -> list[str]:
    """Up to ``limit`` of the run's customers (``run_customers``), the most patterned first."""
    return [key for (key,) in con.execute(MOST_PATTERNED_SQL, [limit]).fetchall()]


@dataclass(frozen=True)
class PlotFiles:
    """What the plot files of a run need from the warehouse, read while it is open so that the
    drawing (minutes for thousands of customers) does not hold it."""

    data: list[PatternData]
    index_rows: list[tuple]


def read_plot_files(con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str]) -> PlotFiles:
    """The customers' plot data (three queries for all) and the index page's rows."""
    return PlotFiles(load_pattern_data(con, partition_keys), con.execute(PLOT_INDEX_SQL).fetchall())


def write_pattern_plots(
    plots: PlotFiles,
    folder: Path,
    min_month_ratio: float = 0.85,
    n_jobs: int = -1,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Render each customer's pattern plot into ``folder`` (replacing its previous one), then
    rewrite the index page. A customer without a series gets no file. ``n_jobs`` worker processes
    draw ``PLOTS_PER_TASK`` customers a task (``-1``: one per core). ``progress(done, total)``
    follows the tasks. Returns each customer's file."""
    if n_jobs == 0:
        raise ValueError("n_jobs must be -1 (one per core) or a number of processes, not 0")
    folder.mkdir(parents=True, exist_ok=True)
    data = [d for d in plots.data if not d.months.empty]
    tasks = [data[i : i + PLOTS_PER_TASK] for i in range(0, len(data), PLOTS_PER_TASK)]
    files: dict[str, Path] = {}
    kept = "every plot written before stays, the index is not rewritten"
    with (
        worker_deaths("drawing pattern plots", kept),
        Parallel(n_jobs=n_jobs, backend="loky", return_as="generator") as parallel,
    ):
        for written in parallel(delayed(draw_plot_files)(task, folder, min_month_ratio) for task in tasks):
            files.update(written)
            if progress:
                progress(len(files), len(data))
    write_plot_index(plots.index_rows, folder)
    return files


def draw_plot_files(data: Sequence[PatternData], folder: Path, min_month_ratio: float) -> dict[str, Path]:
    """One task: draw these customers on one plotter and write their files."""
    with PatternPlotter(min_month_ratio) as plotter:
        return {
            d.partition_key: _replace(folder / customer_file_name(d.partition_key, ".png"), plotter.render(d))
            for d in data
        }


def write_plot_index(index_rows: Sequence[tuple], folder: Path) -> Path:
    """``folder/index.html``: every customer of ``index_rows`` (``PLOT_INDEX_SQL``) with a plot file
    there, its months of history, cyclic days, significant monthly trends and flagged quarters,
    linked to its plot."""
    rows = []
    for key, months, cyclic, trends, quarters in index_rows:
        name = customer_file_name(key, ".png")
        if (folder / name).exists():
            rows.append(
                f"<tr><td><a href='{name}'>{escape(key)}</a></td><td>{months}</td><td>{escape(cyclic)}</td>"
                f"<td>{escape(trends)}</td><td>{quarters}</td></tr>"
            )
    page = (
        "<!doctype html><meta charset='utf-8'><title>crm_pipeline regular patterns</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style>"
        f"<h1>Regular patterns ({len(rows)} customers)</h1>"
        "<table><tr><th>customer (plot)</th><th>months</th><th>cyclic days</th>"
        "<th>monthly trends (p &le; limit)</th><th>flagged quarters</th></tr>" + "".join(rows) + "</table>"
    )
    return _replace(folder / INDEX, page.encode())


def _replace(path: Path, content: bytes) -> Path:
    """Write ``content`` to ``path`` through a temporary file: a reader (or a run beside this
    one) sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(content)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)  # left only when the write failed (a full disk)
    return path

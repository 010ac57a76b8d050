"""Anomaly reports from ``shap_values``: which columns drive the anomalies, overall and per
customer, as plots for the asset metadata and as files a user can open (PNG and HTML)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from crm_pipeline.explain.run import SQL_DIR
from crm_pipeline.patterns.plots import figure_png, plt
from crm_pipeline.warehouse.keys import customer_file_name

IMPORTANCE_SQL = (SQL_DIR / "column_importance.sql").read_text()
EVENT_SQL = (
    "SELECT detector, record_id, day, step, column_name, shap_value, explained_output "
    "FROM shap_values WHERE partition_key = ? ORDER BY detector, explained_output DESC, record_id, step"
)
CUSTOMER_ROWS_SQL = """
SELECT partition_key, detector, record_id, day, column_name, step, shap_value, explained_output,
       expected_output
FROM shap_values JOIN run_customers USING (partition_key)
ORDER BY partition_key, detector, explained_output DESC, record_id, column_name, step
"""
TOP_EVENTS_SQL = """
SELECT partition_key, record_id, day, detector, round(any_value(explained_output), 4) AS output,
       string_agg(column_name || ' (step ' || step || '): ' || round(shap_value, 3), '; '
                  ORDER BY abs(shap_value) DESC) FILTER (WHERE rank <= 3) AS top_contributions
FROM (SELECT *, row_number() OVER (PARTITION BY partition_key, record_id, detector
                                   ORDER BY abs(shap_value) DESC) AS rank
      FROM shap_values JOIN run_customers USING (partition_key))
GROUP BY ALL ORDER BY detector, output DESC
"""


def column_importance(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Mean |SHAP| per detector and column over the run customers' explained events."""
    return con.execute(IMPORTANCE_SQL).df()


def importance_png(importance: pd.DataFrame, title: str) -> bytes:
    """Horizontal bars of mean |SHAP| per column, one panel per detector."""
    detectors = list(dict.fromkeys(importance["detector"]))
    fig, axes = plt.subplots(
        1, max(len(detectors), 1), figsize=(5 * max(len(detectors), 1), 3.2), squeeze=False
    )
    for ax, detector in zip(axes[0], detectors, strict=False):
        rows = importance[importance["detector"] == detector].sort_values("mean_abs_shap")
        ax.barh(rows["column_name"], rows["mean_abs_shap"], color="tab:purple")
        ax.set_title(f"{detector} ({int(rows['events'].max())} events)", fontsize=9)
        ax.set_xlabel("mean |SHAP| of the explained output")
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return figure_png(fig)


def customer_png(con: duckdb.DuckDBPyConnection, partition_key: str) -> bytes:
    """The customer's most anomalous explained event per detector: SHAP per column and step."""
    rows = con.execute(EVENT_SQL, [partition_key]).df()
    detectors = list(dict.fromkeys(rows["detector"])) or ["none"]
    fig, axes = plt.subplots(1, len(detectors), figsize=(5 * len(detectors), 3.4), squeeze=False)
    for ax, detector in zip(axes[0], detectors, strict=True):
        mine = rows[rows["detector"] == detector]
        if mine.empty:
            continue
        top = mine[mine["record_id"] == mine["record_id"].iloc[0]]
        grid = top.pivot(index="column_name", columns="step", values="shap_value")
        limit = float(abs(grid.values).max()) or 1.0
        image = ax.imshow(grid.values, cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_yticks(range(len(grid.index)), grid.index, fontsize=7)
        ax.set_xticks(range(len(grid.columns)), grid.columns, fontsize=7)
        ax.set_xlabel("events before the anomaly (0 = the anomaly)")
        ax.set_title(f"{detector}: {top['record_id'].iloc[0]} on {top['day'].iloc[0]:%Y-%m-%d}", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return figure_png(fig)


def write_report(
    con: duckdb.DuckDBPyConnection, directory: Path, importance: pd.DataFrame, global_png: bytes
) -> Path:
    """``report.html`` (the plot inline and every explained event with its top three
    contributions, each linked to its customer's page), ``column_importance.png`` and one page
    per customer under ``customers/`` in ``directory``; returns the report's path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "column_importance.png").write_bytes(global_png)
    pages = write_customer_pages(con, directory)
    events = con.execute(TOP_EVENTS_SQL).df()
    links = [
        f"<a href='{pages[k]}'>{escape(k)}</a>" if k in pages else escape(k) for k in events["partition_key"]
    ]
    for column in events.select_dtypes(include="object").columns:
        events[column] = events[column].map(lambda v: "" if v is None else escape(str(v)))
    events["partition_key"] = links
    image = base64.b64encode(global_png).decode()
    page = (
        _html_head("crm_pipeline anomaly report")
        + "<h1>Anomaly report</h1><h2>Which columns drive the anomalies</h2>"
        f"<img src='data:image/png;base64,{image}'>"
        + importance.to_html(index=False, float_format="%.4f")
        + f"<h2>Explained events ({len(events)})</h2>"
        + events.to_html(index=False, escape=False)
    )
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def write_customer_pages(con: duckdb.DuckDBPyConnection, directory: Path) -> dict[str, str]:
    """One HTML page per run customer with explained events: each event's SHAP values per column
    and look-back step as a coloured grid (red raises the explained output, blue lowers it).
    Returns each customer's page relative to ``directory``."""
    rows = con.execute(CUSTOMER_ROWS_SQL).df()
    folder = directory / "customers"
    folder.mkdir(parents=True, exist_ok=True)
    pages = {}
    for key, mine in rows.groupby("partition_key", sort=False):
        parts = [_html_head(f"anomalies of {key}"), "<p><a href='../report.html'>all customers</a></p>"]
        parts.append(f"<h1>{escape(key)}</h1>")
        for (detector, record), event in mine.groupby(["detector", "record_id"], sort=False):
            first = event.iloc[0]
            parts.append(
                f"<h2>{escape(detector)}: {escape(record)} on {first['day']:%Y-%m-%d}</h2>"
                f"<p>explained output {first['explained_output']:.4g} against "
                f"{first['expected_output']:.4g} expected</p>" + _grid_html(event)
            )
        name = customer_file_name(key, ".html")
        (folder / name).write_text("".join(parts), encoding="utf-8")
        pages[key] = f"customers/{name}"
    return pages


def _grid_html(event: pd.DataFrame) -> str:
    """An event's SHAP values as a table of columns x look-back steps, coloured by sign and size."""
    grid = event.pivot(index="column_name", columns="step", values="shap_value")
    values = grid.to_numpy()
    limit = float(np.abs(values).max()) or 1.0
    head = "".join(f"<th>{step}</th>" for step in grid.columns)
    body = "".join(
        f"<tr><th>{escape(column)}</th>" + "".join(_cell(v, limit) for v in row) + "</tr>"
        for column, row in zip(grid.index, values, strict=True)
    )
    return f"<table><tr><th>column / steps before (0: the anomaly)</th>{head}</tr>{body}</table>"


def _cell(value: float, limit: float) -> str:
    red, green, blue = (214, 39, 40) if value > 0 else (31, 119, 180)
    return f"<td style='background:rgba({red},{green},{blue},{abs(value) / limit:.2f})'>{value:.3g}</td>"


def _html_head(title: str) -> str:
    return (
        f"<!doctype html><meta charset='utf-8'><title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style>"
    )

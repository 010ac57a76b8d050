"""Anomaly reports from ``shap_values``: which columns drive the anomalies, overall and per
customer, as plots for the asset metadata and as files a user can open (PNG and HTML)."""

from __future__ import annotations

import base64
from pathlib import Path

import duckdb
import pandas as pd

from crm_pipeline.explain.run import SQL_DIR
from crm_pipeline.patterns.plots import figure_png, plt

IMPORTANCE_SQL = (SQL_DIR / "column_importance.sql").read_text()
EVENT_SQL = (
    "SELECT detector, record_id, day, step, column_name, shap_value, explained_output "
    "FROM shap_values WHERE partition_key = ? ORDER BY detector, explained_output DESC, record_id, step"
)
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
    contributions) and ``column_importance.png`` in ``directory``; returns the HTML path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "column_importance.png").write_bytes(global_png)
    events = con.execute(TOP_EVENTS_SQL).df()
    image = base64.b64encode(global_png).decode()
    page = (
        "<!doctype html><meta charset='utf-8'><title>crm_pipeline anomaly report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style>"
        "<h1>Anomaly report</h1><h2>Which columns drive the anomalies</h2>"
        f"<img src='data:image/png;base64,{image}'>"
        + importance.to_html(index=False, float_format="%.4f")
        + f"<h2>Explained events ({len(events)})</h2>"
        + events.to_html(index=False, escape=True)
    )
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path

"""The per-customer anomaly plot: the daily series with each detector's flagged days."""

from __future__ import annotations

import duckdb

from crm_pipeline.patterns.plots import figure_png, plt


def anomaly_png(con: duckdb.DuckDBPyConnection, partition_key: str, measure: str) -> bytes:
    """One panel: ``measure`` per day over the scored window, flagged days marked per detector."""
    series = con.execute(
        "SELECT day, y FROM lag_features WHERE partition_key = ? AND measure = ? "
        "AND day >= (SELECT min(day) FROM anomaly_scores WHERE partition_key = ? AND measure = ?) ORDER BY 1",
        [partition_key, measure, partition_key, measure],
    ).df()
    flags = con.execute(
        "SELECT s.detector, s.day, l.y FROM anomaly_scores AS s "
        "JOIN lag_features AS l USING (partition_key, measure, day) "
        "WHERE s.partition_key = ? AND s.measure = ? AND s.flag ORDER BY 1, 2",
        [partition_key, measure],
    ).df()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(series["day"], series["y"], color="grey", lw=0.7, label=measure)
    markers = "ovsD^<>p*hX"
    for i, (detector, rows) in enumerate(flags.groupby("detector", sort=True)):
        ax.scatter(rows["day"], rows["y"], s=28, marker=markers[i % len(markers)], label=detector, alpha=0.8)
    ax.set_title(f"{partition_key}: {measure} and the days each detector flags", fontsize=9)
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    return figure_png(fig)

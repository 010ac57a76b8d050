"""Per-customer pattern plots: monthly series with its trend line, and the periodic days."""

from __future__ import annotations

import base64
import io

import duckdb
import matplotlib
import pandas as pd

matplotlib.use("Agg")  # no display: render to PNG
import matplotlib.pyplot as plt  # noqa: E402

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: A customer's monthly amounts, each month marked complete when the daily calendar covers all of
#: it: the months ``monthly_regression.sql`` fits its trend to (a partial first or last month is not).
MONTHS_SQL = """
SELECT period_start, amount_in::DOUBLE AS amount_in, amount_out::DOUBLE AS amount_out,
       period_start >= first_day AND period_start + INTERVAL 1 MONTH <= last_day + INTERVAL 1 DAY AS complete
FROM customer_series,
     (SELECT min(period_start) AS first_day, max(period_start) AS last_day FROM customer_series
      WHERE partition_key = $1 AND grain = 'day')
WHERE partition_key = $1 AND grain = 'month'
ORDER BY 1
"""


def monthly_amounts(con: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    """The customer's monthly amounts in and out, and which months are complete (the ones its
    trend was fitted to)."""
    return con.execute(MONTHS_SQL, [partition_key]).df()


def pattern_png(con: duckdb.DuckDBPyConnection, partition_key: str) -> bytes:
    """A two-panel PNG: monthly amounts in/out with OLS trend lines; months hit per weekday/day."""
    months = monthly_amounts(con, partition_key)
    trend = dict(
        (m, (s, i))
        for m, s, i in con.execute(
            "SELECT measure, slope, intercept FROM pattern_monthly_trend WHERE partition_key = ?",
            [partition_key],
        ).fetchall()
    )
    period = con.execute(
        "SELECT kind, value, max(ratio) AS ratio, bool_or(cyclic) AS cyclic FROM pattern_periodicity "
        "WHERE partition_key = ? GROUP BY ALL ORDER BY kind, value",
        [partition_key],
    ).df()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), gridspec_kw={"height_ratios": [3, 2]})
    for measure, colour in (("amount_in", "tab:green"), ("amount_out", "tab:red")):
        top.plot(months["period_start"], months[measure], color=colour, lw=1, label=measure)
        if measure in trend and trend[measure][0] is not None:
            slope, intercept = trend[measure]
            fitted = months[months["complete"]]  # the months the regression read, t = 0 the first
            t = range(len(fitted))
            top.plot(fitted["period_start"], [intercept + slope * i for i in t], color=colour, ls="--", lw=1)
    top.set_title(f"{partition_key}: monthly amounts and trend")
    top.legend(fontsize=8)
    labels, colours, heights = [], [], []
    for row in period.itertuples():
        labels.append(WEEKDAYS[row.value - 1] if row.kind == "weekday" else str(row.value))
        heights.append(row.ratio)
        colours.append("tab:blue" if row.cyclic else "lightgrey")
    bottom.bar(range(len(heights)), heights, color=colours)
    bottom.set_xticks(range(len(labels)), labels, fontsize=6)
    bottom.axhline(0.85, color="black", lw=0.8, ls=":")
    bottom.set_ylabel("share of months")
    bottom.set_title("periodic weekdays and days of month (blue: cyclic)", fontsize=9)
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig: plt.Figure) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed: no figures pile up in a long run)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, title: str) -> str:
    """A PNG inline in markdown (Dagster metadata has no image type)."""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"

"""Per-customer pattern plots: monthly series with its trend line, and the periodic days."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import matplotlib
import pandas as pd
from PIL import Image

matplotlib.use("Agg")  # no display: render to PNG
import matplotlib.pyplot as plt  # noqa: E402

#: Weekday tick labels: two letters, so that seven fit under seven bars at this size.
WEEKDAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
#: Resolution of every PNG the pipeline draws (an 8-inch plot is 640 pixels wide).
PNG_DPI = 80
#: The customers' monthly amounts ($1: a list of keys), each month marked complete when the daily
#: calendar covers all of it: the months ``monthly_regression.sql`` fits its trend to (a partial
#: first or last month is not).
MONTHS_SQL = """
WITH span AS (
    SELECT partition_key, min(period_start) AS first_day, max(period_start) AS last_day
    FROM customer_series WHERE grain = 'day' AND partition_key IN (SELECT unnest($1)) GROUP BY 1
)
SELECT partition_key, period_start, amount_in::DOUBLE AS amount_in, amount_out::DOUBLE AS amount_out,
       period_start >= first_day AND period_start + INTERVAL 1 MONTH <= last_day + INTERVAL 1 DAY AS complete
FROM customer_series JOIN span USING (partition_key)
WHERE grain = 'month'
ORDER BY 1, 2
"""
TREND_SQL = (
    "SELECT partition_key, measure, slope, intercept FROM pattern_monthly_trend "
    "WHERE partition_key IN (SELECT unnest($1))"
)
PERIODICITY_SQL = (
    "SELECT partition_key, kind, value, max(ratio) AS ratio, bool_or(cyclic) AS cyclic "
    "FROM pattern_periodicity WHERE partition_key IN (SELECT unnest($1)) GROUP BY ALL"
)
#: The periodicity bars, in plot order: days of month 1-31, then weekdays (ISO 1 = Monday).
PERIODIC_DAYS = (*(("day_of_month", d) for d in range(1, 32)), *(("weekday", w) for w in range(1, 8)))
AMOUNT_COLOURS = {"amount_in": "tab:green", "amount_out": "tab:red"}


@dataclass(frozen=True, eq=False)
class PatternData:
    """What one customer's pattern plot shows: plain values, so that worker processes can draw
    it without the warehouse."""

    partition_key: str
    months: pd.DataFrame  # period_start, amount_in, amount_out, complete (fitted by the trend)
    trend: dict[str, tuple[float | None, float | None]]  # measure -> (slope, intercept)
    periodicity: dict[tuple[str, int], tuple[float, bool]]  # (kind, value) -> (ratio, cyclic)


def load_pattern_data(con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str]) -> list[PatternData]:
    """The plot data of ``partition_keys``, in their order, in three queries for all of them."""
    keys = list(partition_keys)
    months = {
        k: m.drop(columns="partition_key")
        for k, m in con.execute(MONTHS_SQL, [keys]).df().groupby("partition_key")
    }
    trend: dict[str, dict] = {k: {} for k in keys}
    for key, measure, slope, intercept in con.execute(TREND_SQL, [keys]).fetchall():
        trend[key][measure] = (slope, intercept)
    period: dict[str, dict] = {k: {} for k in keys}
    for key, kind, value, ratio, cyclic in con.execute(PERIODICITY_SQL, [keys]).fetchall():
        period[key][(kind, value)] = (ratio, cyclic)
    empty = pd.DataFrame(columns=["period_start", "amount_in", "amount_out", "complete"])
    return [PatternData(k, months.get(k, empty).reset_index(drop=True), trend[k], period[k]) for k in keys]


class PatternPlotter:
    """Draws customers' pattern plots on one figure that is kept between customers: only the
    data, limits and title change, so a bulk run does not build axes, ticks and fonts a thousand
    times (about 4x faster than a new figure each). What never changes (the lower panel's axes,
    38 tick labels and title) is drawn once into a background; each customer restores it and
    draws only the upper panel, the bars, the threshold and the frame over it (blitting: 2x).
    Use as a context manager; closes the figure."""

    def __init__(self, min_month_ratio: float = 0.85) -> None:
        self.fig, (self.top, self.bottom) = plt.subplots(
            2, 1, figsize=(8, 5.5), dpi=PNG_DPI, gridspec_kw={"height_ratios": [3, 2]}
        )
        self.fig.subplots_adjust(left=0.09, right=0.98, top=0.94, bottom=0.06, hspace=0.35)
        self.series = {m: self.top.plot([], [], color=c, lw=1, label=m)[0] for m, c in AMOUNT_COLOURS.items()}
        self.trends = {m: self.top.plot([], [], color=c, ls="--", lw=1)[0] for m, c in AMOUNT_COLOURS.items()}
        self.top.xaxis_date()  # the lines start empty: say their x is dates
        self.empty_limits = (self.top.get_xlim(), self.top.get_ylim())
        self.top.legend(fontsize=8, loc="upper left")
        self.bars = self.bottom.bar(range(len(PERIODIC_DAYS)), [0.0] * len(PERIODIC_DAYS))
        labels = [WEEKDAYS[v - 1] if kind == "weekday" else str(v) for kind, v in PERIODIC_DAYS]
        self.bottom.set_xticks(range(len(labels)), labels, fontsize=6)
        self.bottom.set_ylim(0, 1.05)
        threshold = self.bottom.axhline(min_month_ratio, color="black", lw=0.8, ls=":")
        self.bottom.set_ylabel("share of months")
        self.bottom.set_title("periodic weekdays and days of month (blue: cyclic)", fontsize=9)
        # Animated artists are left out of the background and drawn per customer, in this order
        # (the order a full draw uses: bars, then the threshold line and the frame above them).
        # savefig skips animated artists: draw this figure with render(), never figure_png().
        self.foreground = [*self.bars, threshold, *self.bottom.spines.values()]
        for artist in (self.top, *self.foreground):
            artist.set_animated(True)
        self.fig.canvas.draw()
        self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def __enter__(self) -> PatternPlotter:
        return self

    def __exit__(self, *_: object) -> None:
        plt.close(self.fig)

    def render(self, data: PatternData) -> bytes:
        """The customer's two-panel PNG: monthly amounts in/out with their OLS trend lines over the
        months the regression read; the share of months each day of month and weekday was hit."""
        months = data.months
        fitted = months[months["complete"].astype(bool)]  # t = 0 is the first complete month
        for measure in AMOUNT_COLOURS:
            self.series[measure].set_data(months["period_start"], months[measure])
            slope, intercept = data.trend.get(measure, (None, None))
            if slope is None or fitted.empty:
                self.trends[measure].set_data([], [])
            else:
                line = [intercept + slope * t for t in range(len(fitted))]
                self.trends[measure].set_data(fitted["period_start"], line)
        if months.empty:  # nothing to scale to: the limits of a fresh figure, not the last customer's
            self.top.set_xlim(self.empty_limits[0], auto=True)
            self.top.set_ylim(self.empty_limits[1], auto=True)
        else:
            self.top.relim()
            self.top.autoscale_view()
        self.top.set_title(f"{data.partition_key}: monthly amounts and trend")
        for bar, day in zip(self.bars, PERIODIC_DAYS, strict=True):
            ratio, cyclic = data.periodicity.get(day, (0.0, False))
            bar.set_height(ratio or 0.0)
            bar.set_color("tab:blue" if cyclic else "lightgrey")
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        self.fig.draw_artist(self.top)
        for artist in self.foreground:
            self.bottom.draw_artist(artist)
        buffer = io.BytesIO()
        Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(
            buffer, format="png"
        )
        return buffer.getvalue()


def figure_png(fig: plt.Figure, close: bool = True) -> bytes:
    """A matplotlib figure as PNG bytes; closed unless it is to be drawn again (no figures pile
    up in a long run)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PNG_DPI)
    if close:
        plt.close(fig)
    return buffer.getvalue()


def png_markdown(png: bytes, title: str) -> str:
    """A PNG inline in markdown (Dagster metadata has no image type)."""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"

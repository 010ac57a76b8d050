"""The lag dataset's features (Soro et al., Table 1), one window expression each, and the
statement that computes them all for the four measures at once.

Each expression is written for one measure column ``{m}`` over a window ``p`` ordered by day
(or week, month); ``n`` is the day's position in the customer's series. A window that does not
fit since the series start yields NULL.

Moving sums and averages are differences of one running sum per measure (``{m}__cs``) instead
of a sliding frame each: two ``lag`` calls cost a fraction of a frame aggregate. The running sum
counts cents (amounts have two decimals), an integer held exactly in a double, so ten years of
differences carry no rounding drift.
"""

from __future__ import annotations

from pathlib import Path

MEASURES = ("amount_in", "amount_out", "counterparts_in", "counterparts_out")


#: Running sum of a measure in cents, up to and including the day; the running sums of the
#: days before the series start count as 0.
RUNNING_SUM = "sum(round({m} * 100)) OVER (p ROWS UNBOUNDED PRECEDING) AS {m}__cs"


def _sum_between(first: int, last: int) -> str:
    """Sum of the days ``first`` .. ``last`` before the current one (``first`` >= ``last`` >= 1),
    NULL where the series does not reach back ``first`` days."""
    cents = f"lag({{m}}__cs, {last}) OVER p - lag({{m}}__cs, {first + 1}, 0) OVER p"
    return f"CASE WHEN n > {first} THEN ({cents}) / 100 END"


def _avg_before(days: int) -> str:
    """Mean of the ``days`` days before the current one (the day itself is not read)."""
    return f"{_sum_between(days, 1)} / {days}"


def _neighbourhood(centre: int) -> str:
    """Sum over day t-centre +/- 2 (five days, all in the past)."""
    return _sum_between(centre + 2, centre - 2)


DAY_FEATURES: dict[str, str] = {
    "y": "{m}",
    **{f"y_lag{k}": f"lag({{m}}, {k}) OVER p" for k in range(1, 7)},
    "week_avg": _avg_before(7),
    "month_avg": _avg_before(30),
    "quarter_avg": _avg_before(90),
    "nbhd_prev_week": _neighbourhood(7),
    "nbhd_prev_month": _neighbourhood(30),
}
WEEK_FEATURES = {f"prev_week_{k}": f"lag({{m}}, {k}) OVER p" for k in range(1, 4)}
MONTH_FEATURES = {f"prev_month_{k}": f"lag({{m}}, {k}) OVER p" for k in range(1, 4)}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

#: Column order of ``lag_features`` after (partition_key, measure, day).
NUMERIC_FEATURES = (
    *list(DAY_FEATURES)[:10],
    *WEEK_FEATURES,
    *MONTH_FEATURES,
    *list(DAY_FEATURES)[10:],
)
_SKELETON = (Path(__file__).parent / "sql" / "lag_features.sql").read_text()


def _expressions(features: dict[str, str]) -> str:
    return ",\n           ".join(
        f"{expr.format(m=m)} AS {m}__{name}" for m in MEASURES for name, expr in features.items()
    )


def lag_statement() -> str:
    """The SELECT of the lag dataset for the customers in ``run_customers``."""
    weekday_flags = [f"isodow(day) = {i} AS is_{d}" for i, d in enumerate(WEEKDAYS, start=1)]
    features = [*DAY_FEATURES, *WEEK_FEATURES, *MONTH_FEATURES]
    columns = [*NUMERIC_FEATURES[:10], *weekday_flags, *NUMERIC_FEATURES[10:]]
    groups = ", ".join(f"({', '.join(f'{m}__{f}' for f in features)}) AS '{m}'" for m in MEASURES)
    return _SKELETON.format(
        running_sums=", ".join(RUNNING_SUM.format(m=m) for m in MEASURES),
        day_features=_expressions(DAY_FEATURES),
        week_features=_expressions(WEEK_FEATURES),
        month_features=_expressions(MONTH_FEATURES),
        columns=", ".join(columns),
        features=", ".join(features),
        measure_groups=groups,
    )

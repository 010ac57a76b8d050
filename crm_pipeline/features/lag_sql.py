"""The lag dataset's features (Soro et al., Table 1), one window expression each, and the
statement that computes them all for the four measures at once.

Each expression is written for one measure column ``{m}`` over a window ``p`` ordered by day
(or week, month); ``n`` is the day's position in the customer's series. A window that does not
fit since the series start yields NULL.
"""

from __future__ import annotations

from pathlib import Path

MEASURES = ("amount_in", "amount_out", "counterparts_in", "counterparts_out")


def _avg_before(days: int) -> str:
    """Mean of the ``days`` days before the current one (the day itself is not read)."""
    return f"CASE WHEN n > {days} THEN avg({{m}}) OVER (p ROWS BETWEEN {days} PRECEDING AND 1 PRECEDING) END"


def _neighbourhood(centre: int) -> str:
    """Sum over day t-centre +/- 2 (five days, all in the past)."""
    first, last = centre + 2, centre - 2
    frame = f"p ROWS BETWEEN {first} PRECEDING AND {last} PRECEDING"
    return f"CASE WHEN n > {first} THEN sum({{m}}) OVER ({frame}) END"


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
        day_features=_expressions(DAY_FEATURES),
        week_features=_expressions(WEEK_FEATURES),
        month_features=_expressions(MONTH_FEATURES),
        columns=", ".join(columns),
        features=", ".join(features),
        measure_groups=groups,
    )

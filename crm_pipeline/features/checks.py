"""The feature tables' data checks as plain counts (zero when the check passes): the assets
report them as Dagster asset checks, and tests feed them broken tables.

Each counts over the customers in ``run_customers``.
"""

from __future__ import annotations

from datetime import date

import duckdb

from crm_pipeline.warehouse.customer_tables import RUN_ROWS
from crm_pipeline.warehouse.store import scalar

DUPLICATES_SQL = "SELECT count(*) FROM (SELECT {cols} " + RUN_ROWS + " GROUP BY ALL HAVING count(*) > 1)"
#: Customers whose calendar is not complete: a grain missing, a period missing between the
#: first and the last, or days that stop before the horizon.
CALENDAR_GAPS_SQL = """
SELECT count(DISTINCT partition_key) FROM (
    SELECT partition_key, grain, count(*) AS periods, min(period_start) AS first, max(period_start) AS last,
           count(*) OVER (PARTITION BY partition_key) AS grains
    FROM customer_series JOIN run_customers USING (partition_key)
    GROUP BY partition_key, grain
)
WHERE grains <> 4
   OR periods <> date_diff(CASE grain WHEN 'day' THEN 'day' WHEN 'week' THEN 'week'
                                      WHEN 'month' THEN 'month' ELSE 'quarter' END, first, last) + 1
   OR (grain = 'day' AND last <> ?::DATE)
"""
NULL_LAGS_SQL = (
    "SELECT count(*) " + RUN_ROWS.format(table="lag_features") + " WHERE NOT is_warmup AND ("
    "y_lag6 IS NULL OR week_avg IS NULL OR month_avg IS NULL OR quarter_avg IS NULL OR "
    "prev_week_3 IS NULL OR prev_month_3 IS NULL OR nbhd_prev_week IS NULL OR nbhd_prev_month IS NULL)"
)


def duplicate_periods(con: duckdb.DuckDBPyConnection) -> int:
    """``customer_series`` rows sharing (customer, grain, period)."""
    return scalar(
        con, DUPLICATES_SQL.format(cols="partition_key, grain, period_start", table="customer_series")
    )


def calendar_gaps(con: duckdb.DuckDBPyConnection, horizon: date) -> int:
    """Customers whose four calendars are not complete from their first period to ``horizon``."""
    return scalar(con, CALENDAR_GAPS_SQL, [horizon])


def duplicate_lag_days(con: duckdb.DuckDBPyConnection) -> int:
    """``lag_features`` rows sharing (customer, measure, day)."""
    return scalar(con, DUPLICATES_SQL.format(cols="partition_key, measure, day", table="lag_features"))


def null_lags_after_warmup(con: duckdb.DuckDBPyConnection) -> int:
    """``lag_features`` rows past the warm-up window with a lag, average or neighbourhood NULL."""
    return scalar(con, NULL_LAGS_SQL)

"""Regular patterns of each customer: periodicity and trend (Soro, Mellia, Russo).

Periodicity and the quarter-over-quarter rule are single DuckDB statements; the monthly
trend is one SQL pass for the least-squares sums of every customer, then vectorised
t-test p-values (the same numbers statsmodels' OLS gives, without a Python loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from crm_pipeline.warehouse.customer_tables import register_run_customers, replace_customer_rows

SQL_DIR = Path(__file__).parent / "sql"
PERIODICITY_SQL = (SQL_DIR / "periodicity.sql").read_text()
QUARTER_SQL = (SQL_DIR / "quarter_trend.sql").read_text()
REGRESSION_SQL = (SQL_DIR / "monthly_regression.sql").read_text()


@dataclass(frozen=True)
class PatternRules:
    """Thresholds of the paper, overridable."""

    tau_share: float = 0.8
    min_month_ratio: float = 0.85
    quarter_delta: float = 0.30
    max_p_value: float = 0.05


PAPER_RULES = PatternRules()


def monthly_trend(sums: pd.DataFrame, max_p_value: float) -> pd.DataFrame:
    """Slope p-values (two-sided t-test, n - 2 degrees of freedom) from least-squares sums.

    Matches statsmodels' ``OLS(y, add_constant(t)).fit().pvalues[1]``. A perfect fit has
    p = 0 when the slope is not zero and p = 1 when it is; fewer than 3 months give NaN.
    """
    n = sums["months"].to_numpy(dtype=float)
    slope = sums["slope"].to_numpy(dtype=float)
    sse = np.clip(sums["syy"].to_numpy(dtype=float) - slope * sums["sxy"].to_numpy(dtype=float), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(sse / (n - 2) / sums["sxx"].to_numpy(dtype=float))
        t = slope / se
        p = 2 * stats.t.sf(np.abs(t), n - 2)
    p = np.where(se == 0, np.where(slope == 0, 1.0, 0.0), p)
    p = np.where(n < 3, np.nan, p)
    out = sums[["partition_key", "measure", "months", "slope", "intercept", "mean_total"]].copy()
    out["p_value"] = p
    with np.errstate(divide="ignore", invalid="ignore"):
        out["relative_slope"] = np.where(out["mean_total"] != 0, slope / np.abs(out["mean_total"]), np.nan)
    out["significant"] = out["p_value"] <= max_p_value
    out["direction"] = np.select(
        [out["significant"] & (slope > 0), out["significant"] & (slope < 0)], ["up", "down"], "flat"
    )
    return out


def write_patterns(
    con: duckdb.DuckDBPyConnection, partition_keys: Sequence[str], rules: PatternRules = PAPER_RULES
) -> dict[str, int]:
    """Replace the periodicity, quarter-trend and monthly-trend rows of ``partition_keys``."""
    register_run_customers(con, partition_keys)
    written = {
        "pattern_periodicity": replace_customer_rows(
            con, "pattern_periodicity", PERIODICITY_SQL, [rules.tau_share, rules.min_month_ratio]
        ),
        "pattern_quarter_trend": replace_customer_rows(
            con, "pattern_quarter_trend", QUARTER_SQL, [rules.quarter_delta]
        ),
    }
    trend = monthly_trend(con.execute(REGRESSION_SQL).df(), rules.max_p_value)
    con.register("monthly_trend_rows", trend)
    try:
        written["pattern_monthly_trend"] = replace_customer_rows(
            con, "pattern_monthly_trend", "SELECT * FROM monthly_trend_rows"
        )
    finally:
        con.unregister("monthly_trend_rows")
    return written

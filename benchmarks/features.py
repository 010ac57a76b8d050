"""Feature speed: raw transactions in the warehouse -> customer series -> lag table.

1,000 customers x 10 years of daily data (about 3.65M customer-days, four measures each)
by default. Side by side in one run:

* ours   - ``write_customer_series`` + ``write_lag_features``: two DuckDB statements;
* pandas - a straightforward reference: read the transactions into pandas, build each
           customer's daily calendar, ``groupby`` + ``shift`` / ``rolling`` for the lags,
           write the table back to DuckDB.

The two tables are asserted equal. Peak memory is the peak RSS of a fresh child process
per variant. Then periodicity and trend for the same customers: ours (three SQL statements and
vectorised p-values) against a per-customer Python loop calling statsmodels OLS, p-values
asserted equal. Last line: ``RESULT speedup_vs_pandas=... peak_mb_ratio=... patterns_speedup=...``.

    .venv/bin/python benchmarks/features.py
    .venv/bin/python benchmarks/features.py --customers 50 --years 3   # quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from measure import child_peak_mb, report_child_peak  # noqa: E402

from crm_pipeline.features.lag_sql import MEASURES  # noqa: E402
from crm_pipeline.features.series import write_customer_series, write_lag_features  # noqa: E402
from crm_pipeline.patterns.rules import PAPER_RULES, PatternRules, write_patterns  # noqa: E402
from crm_pipeline.warehouse.store import Warehouse, refresh_customer_keys  # noqa: E402

START = date(2010, 1, 1)
FEATURES = [
    "y", "y_lag1", "y_lag2", "y_lag3", "y_lag4", "y_lag5", "y_lag6", "week_avg", "month_avg",
    "quarter_avg", "prev_week_1", "prev_week_2", "prev_week_3", "prev_month_1", "prev_month_2",
    "prev_month_3", "nbhd_prev_week", "nbhd_prev_month",
]  # fmt: skip
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def make_warehouse(path: Path, customers: int, years: int, seed: int = 5) -> date:
    """Transactions for ``customers`` over ``years``, generated inside DuckDB; returns the horizon."""
    days = int(round(365.25 * years))
    with Warehouse(path).connect() as con:
        con.execute(
            """
            INSERT INTO raw_store.transactions
            SELECT 't' || c || '-' || d || '-' || k, 'C' || c, ?::DATE + d::INTEGER,
                   round(50 + 900 * random(), 2)::DECIMAL(18, 2), 'CP' || ((c * 7 + d * k) % 23),
                   CASE WHEN (c + d + k) % 3 = 0 THEN 'in' ELSE 'out' END,
                   'bench', 'r', 'bench', now()
            FROM range(?) AS cs(c), range(?) AS ds(d), range(3) AS ks(k)
            WHERE hash(c, d, k, ?) % 10 < 4
            """,
            [START, customers, days, seed],
        )
        con.execute("INSERT INTO loads VALUES ('bench', 'r', 'transactions', 'all', now())")
        refresh_customer_keys(con, "r")
        return con.execute("SELECT max(event_date) FROM raw.transactions").fetchall()[0][0]


def customer_keys(path: Path) -> list[str]:
    with Warehouse(path).connect(read_only=True) as con:
        return [k for (k,) in con.execute("SELECT partition_key FROM customer_keys ORDER BY 1").fetchall()]


def run_ours(path: Path, horizon: date) -> int:
    keys = customer_keys(path)
    with Warehouse(path).connect() as con:
        write_customer_series(con, keys, horizon)
        return write_lag_features(con, keys)


def _measures(tx: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Amount and distinct counterparts, in and out apart, per ``by`` group (one row each)."""
    grouped = tx.groupby([*by, "direction"]).agg(
        amount=("amount", "sum"), counterparts=("counterpart", "nunique")
    )
    wide = grouped.unstack("direction").fillna(0.0)
    wide.columns = [f"{m}_{d}" for m, d in wide.columns]
    return wide.reset_index()


def _period_lags(tx: pd.DataFrame, calendar: pd.DataFrame, freq: str, lags: int, name: str) -> pd.DataFrame:
    """Per customer and calendar period (week or month): the measures of the 1..lags previous periods."""
    tx = tx.assign(period=tx["event_date"].dt.to_period(freq).dt.start_time)
    periods = calendar.assign(period=calendar["day"].dt.to_period(freq).dt.start_time)
    periods = periods[["partition_key", "period"]].drop_duplicates()
    full = periods.merge(
        _measures(tx, ["partition_key", "period"]), on=["partition_key", "period"], how="left"
    )
    full = full.fillna(0.0).melt(id_vars=["partition_key", "period"], var_name="measure", value_name="total")
    full = full.sort_values(["partition_key", "measure", "period"])
    by = full.groupby(["partition_key", "measure"])["total"]
    for k in range(1, lags + 1):
        full[f"{name}_{k}"] = by.shift(k)
    return full.drop(columns="total")


def pandas_reference(tx: pd.DataFrame, horizon: date) -> pd.DataFrame:
    """The lag table the straightforward way: calendars, groupby, shift and rolling."""
    tx = tx[tx["event_date"] <= pd.Timestamp(horizon)].copy()
    tx["amount"] = tx["amount"].astype(float)
    first = tx.groupby("partition_key")["event_date"].min()
    calendar = pd.concat(
        [
            pd.DataFrame({"partition_key": key, "day": pd.date_range(start, horizon, freq="D")})
            for key, start in first.items()
        ],
        ignore_index=True,
    )
    daily = _measures(tx, ["partition_key", "event_date"]).rename(columns={"event_date": "day"})
    long = calendar.merge(daily, on=["partition_key", "day"], how="left").fillna(0.0)
    long = long.melt(
        id_vars=["partition_key", "day"], value_vars=list(MEASURES), var_name="measure", value_name="y"
    )
    long = long.sort_values(["partition_key", "measure", "day"], ignore_index=True)
    g = long.groupby(["partition_key", "measure"])["y"]
    n = g.cumcount() + 1
    for k in range(1, 7):
        long[f"y_lag{k}"] = g.shift(k)
    for name, width in (("week_avg", 7), ("month_avg", 30), ("quarter_avg", 90)):
        long[name] = g.transform(lambda s, w=width: s.shift(1).rolling(w).mean()).where(n > width)
    long["nbhd_prev_week"] = g.transform(lambda s: s.shift(5).rolling(5).sum()).where(n > 9)
    long["nbhd_prev_month"] = g.transform(lambda s: s.shift(28).rolling(5).sum()).where(n > 32)
    for i, wd in enumerate(WEEKDAYS):
        long[f"is_{wd}"] = long["day"].dt.dayofweek == i
    weeks = _period_lags(tx, calendar, "W-SUN", 3, "prev_week")
    months = _period_lags(tx, calendar, "M", 3, "prev_month")
    long["week"] = long["day"].dt.to_period("W-SUN").dt.start_time
    long["month"] = long["day"].dt.to_period("M").dt.start_time
    long = long.merge(weeks.rename(columns={"period": "week"}), on=["partition_key", "measure", "week"])
    long = long.merge(months.rename(columns={"period": "month"}), on=["partition_key", "measure", "month"])
    first_day = long.groupby(["partition_key", "measure"])["day"].transform("min")
    long["is_warmup"] = long["day"] < np.maximum(
        first_day + pd.Timedelta(days=90), first_day.dt.to_period("M").dt.start_time + pd.DateOffset(months=3)
    )
    return long.drop(columns=["week", "month"])


def run_pandas(path: Path, horizon: date) -> int:
    con = duckdb.connect(str(path))
    tx = con.execute(
        "SELECT k.partition_key, t.event_date, t.amount, t.counterpart, t.direction "
        "FROM raw.transactions t JOIN customer_keys k USING (source_db, customer_id)"
    ).df()
    table = pandas_reference(tx, horizon)
    con.register("reference", table)
    con.execute("CREATE OR REPLACE TABLE lag_reference AS SELECT * FROM reference")
    con.close()
    return len(table)


def assert_same(path: Path) -> None:
    """Both variants wrote the same table (values within float tolerance)."""
    con = duckdb.connect(str(path), read_only=True)
    cols = ", ".join(
        ["partition_key", "measure", "day", *FEATURES, *(f"is_{d}" for d in WEEKDAYS), "is_warmup"]
    )
    ours = con.execute(f"SELECT {cols} FROM lag_features ORDER BY 1, 2, 3").df()
    ref = con.execute(f"SELECT {cols} FROM lag_reference ORDER BY 1, 2, 3").df()
    con.close()
    ours["day"] = pd.to_datetime(ours["day"])
    ref["day"] = pd.to_datetime(ref["day"])
    pd.testing.assert_frame_equal(ours, ref, check_dtype=False, atol=1e-6, rtol=1e-9)


def run_patterns(path: Path) -> tuple[pd.DataFrame, set[tuple]]:
    """Ours: periodicity, quarter trend and monthly trend for every customer at once."""
    keys = customer_keys(path)
    with Warehouse(path).connect() as con:
        write_patterns(con, keys)
        trend = con.execute(
            "SELECT partition_key, measure, p_value FROM pattern_monthly_trend ORDER BY 1, 2"
        ).df()
        cyclic = con.execute(
            "SELECT partition_key, measure, kind, value FROM pattern_periodicity WHERE cyclic"
        ).fetchall()
    return trend, set(cyclic)


def loop_patterns(path: Path, rules: PatternRules = PAPER_RULES) -> tuple[pd.DataFrame, set[tuple]]:
    """The baseline: a Python loop over customers, pandas for periodicity and quarters,
    statsmodels OLS for the monthly trend."""
    import statsmodels.api as sm

    con = duckdb.connect(str(path), read_only=True)
    series = con.execute("SELECT * FROM customer_series ORDER BY partition_key, grain, period_start").df()
    con.close()
    out, cyclic = [], set()
    for key, frame in series.groupby("partition_key", sort=True):
        daily = frame[frame.grain == "day"]
        first, last = daily.period_start.min(), daily.period_start.max()
        for measure in ("counterparts_in", "counterparts_out"):
            d = daily[["period_start", measure]].copy()
            year = d.period_start.dt.year
            tau = rules.tau_share * d.groupby(year)[measure].transform("max")
            d["hit"] = (tau > 0) & (d[measure] > tau)
            d["month"] = d.period_start.dt.to_period("M")
            months = d["month"].nunique()
            for kind, value in (
                ("weekday", d.period_start.dt.dayofweek + 1),
                ("day_of_month", d.period_start.dt.day),
            ):
                hits = d.assign(value=value).groupby(["value", "month"])["hit"].any().groupby("value").sum()
                cyclic |= {
                    (key, measure, kind, int(v)) for v in hits.index[hits / months >= rules.min_month_ratio]
                }
        monthly = frame[(frame.grain == "month") & (frame.period_start >= first)]
        monthly = monthly[monthly.period_start + pd.DateOffset(months=1) <= last + pd.Timedelta(days=1)]
        for measure in ("amount_in", "amount_out"):
            y = monthly[measure].astype(float).to_numpy()
            p = np.nan
            if len(y) >= 3:
                fit = sm.OLS(y, sm.add_constant(np.arange(len(y), dtype=float))).fit()
                p = fit.pvalues[1]
            out.append((key, measure, p))
    return pd.DataFrame(out, columns=["partition_key", "measure", "p_value"]), cyclic


VARIANTS = {"ours": run_ours, "pandas": run_pandas, "idle": lambda path, horizon: 0}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--horizon", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        VARIANTS[args.child](Path(args.path), date.fromisoformat(args.horizon))
        report_child_peak()
        return
    with tempfile.TemporaryDirectory(prefix="crm-feat-") as tmp:
        path = Path(tmp) / "w.duckdb"
        horizon = make_warehouse(path, args.customers, args.years)
        times = {}
        for variant in ("pandas", "ours"):
            started = time.perf_counter()
            rows = VARIANTS[variant](path, horizon)
            times[variant] = time.perf_counter() - started
            print(f"{variant:>7}: {times[variant]:7.2f}s  {rows:,} lag rows", flush=True)
        assert_same(path)
        print("tables are equal")
        child = ["--path", str(path), "--horizon", horizon.isoformat()]
        idle = child_peak_mb(__file__, ["--child", "idle", *child])
        peaks = {v: child_peak_mb(__file__, ["--child", v, *child]) - idle for v in ("pandas", "ours")}
        for variant, mb in peaks.items():
            print(f"{variant:>7}: peak {mb:8.1f} MB above an idle process ({idle:.0f} MB)")
        started = time.perf_counter()
        ours_trend, ours_cyclic = run_patterns(path)
        pattern_ours = time.perf_counter() - started
        started = time.perf_counter()
        loop_trend, loop_cyclic = loop_patterns(path)
        pattern_loop = time.perf_counter() - started
        pd.testing.assert_frame_equal(ours_trend, loop_trend, check_dtype=False, rtol=1e-6, atol=1e-12)
        assert ours_cyclic == loop_cyclic, ours_cyclic ^ loop_cyclic
        print(
            f"patterns: ours {pattern_ours:.2f}s, per-customer loop {pattern_loop:.2f}s "
            f"(p-values and {len(ours_cyclic)} cyclic days equal)"
        )
    speedup, ratio = times["pandas"] / times["ours"], peaks["ours"] / peaks["pandas"]
    patterns_speedup = pattern_loop / pattern_ours
    print(f"ours is {speedup:.1f}x the pandas reference with {ratio:.2f}x its peak memory")
    print(
        f"RESULT speedup_vs_pandas={speedup:.2f} peak_mb_ratio={ratio:.3f} "
        f"patterns_speedup={patterns_speedup:.2f}"
    )


if __name__ == "__main__":
    main()

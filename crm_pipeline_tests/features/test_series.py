"""Customer series and the lag dataset on small hand-built series, checked by hand."""

from datetime import date, timedelta

import pytest

from crm_pipeline.features.checks import (
    calendar_gaps,
    duplicate_lag_days,
    duplicate_periods,
    null_lags_after_warmup,
)
from crm_pipeline.features.series import (
    future_transactions,
    series_horizon,
    write_customer_series,
    write_lag_features,
)
from crm_pipeline.warehouse.customer_tables import register_run_customers
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.helpers import seed_transactions as seed

START = date(2020, 1, 1)  # a Wednesday


def build(wh: Warehouse, horizon: date, keys=("db1.C1",)) -> None:
    with wh.connect() as con:
        write_customer_series(con, list(keys), horizon)
        write_lag_features(con, list(keys))


def rows(wh: Warehouse, sql: str, params=()) -> list[tuple]:
    with wh.connect(read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb")


def test_calendar_is_complete_and_in_out_kept_apart(wh):
    seed(
        wh,
        [
            ("db1", "C1", START, 100, "A", "in"),
            ("db1", "C1", START + timedelta(days=2), 50, "B", "out"),
            ("db1", "C1", START + timedelta(days=2), 30, "B", "out"),
            ("db1", "C1", START + timedelta(days=6), -20, "C", "out"),  # a reversal: negative amount
            ("db1", "C1", START + timedelta(days=6), 0, "D", "out"),  # zero amount still counts
        ],
    )
    build(wh, START + timedelta(days=9))
    daily = rows(
        wh,
        "SELECT period_start, amount_in, amount_out, counterparts_out, transactions_out "
        "FROM customer_series WHERE grain = 'day' ORDER BY 1",
    )
    assert [d for d, *_ in daily] == [START + timedelta(days=i) for i in range(10)]
    assert daily[1][1:] == (0, 0, 0, 0)
    assert daily[2][1:] == (0, 80, 1, 2)
    assert daily[6][1:] == (0, -20, 2, 2)
    weeks = rows(
        wh,
        "SELECT period_start, amount_out, counterparts_out FROM customer_series "
        "WHERE grain = 'week' ORDER BY 1",
    )
    assert weeks == [(date(2019, 12, 30), 80, 1), (date(2020, 1, 6), -20, 2)]
    assert rows(wh, "SELECT grain, count(*) FROM customer_series GROUP BY 1 ORDER BY 1") == [
        ("day", 10),
        ("month", 1),
        ("quarter", 1),
        ("week", 2),
    ]


def test_distinct_counterparts_per_period_by_hand(wh):
    d = lambda m, day: date(2020, m, day)  # noqa: E731
    seed(
        wh,
        [
            ("db1", "C1", d(1, 1), 10, "A", "out"),
            ("db1", "C1", d(1, 2), 10, "A", "out"),  # A again, the same week: still one
            ("db1", "C1", d(1, 2), 10, None, "out"),  # no counterpart: a transaction, not a counterpart
            ("db1", "C1", d(1, 2), 10, "A", "in"),  # A incoming is counted apart
            ("db1", "C1", d(1, 8), 10, "A", "out"),
            ("db1", "C1", d(1, 8), 10, "B", "out"),
            ("db1", "C1", d(2, 3), 10, "B", "out"),
            ("db1", "C1", d(2, 3), 10, "B", "out"),  # B twice the same day: one counterpart
            ("db1", "C1", d(3, 31), 10, "C", "out"),  # C on Tuesday 31 March and Wednesday 1 April:
            ("db1", "C1", d(4, 1), 10, "C", "out"),  # one week, two months, two quarters
            ("db1", "C1", d(4, 1), 10, "B", "out"),
        ],
    )
    build(wh, d(4, 1))
    counts = rows(
        wh,
        "SELECT grain, period_start, counterparts_out, counterparts_in, transactions_out "
        "FROM customer_series WHERE counterparts_out + counterparts_in > 0 ORDER BY 1, 2",
    )
    assert counts == [
        ("day", d(1, 1), 1, 0, 1),
        ("day", d(1, 2), 1, 1, 2),
        ("day", d(1, 8), 2, 0, 2),
        ("day", d(2, 3), 1, 0, 2),
        ("day", d(3, 31), 1, 0, 1),
        ("day", d(4, 1), 2, 0, 2),
        ("month", d(1, 1), 2, 1, 5),
        ("month", d(2, 1), 1, 0, 2),
        ("month", d(3, 1), 1, 0, 1),
        ("month", d(4, 1), 2, 0, 2),
        ("quarter", d(1, 1), 3, 1, 8),
        ("quarter", d(4, 1), 2, 0, 2),
        ("week", date(2019, 12, 30), 1, 1, 3),
        ("week", d(1, 6), 2, 0, 2),
        ("week", d(2, 3), 1, 0, 2),
        ("week", d(3, 30), 2, 0, 3),
    ]


def test_lags_averages_flags_by_hand(wh):
    # amount_out on day n (1-based) is n: every feature has a closed form
    seed(wh, [("db1", "C1", START + timedelta(days=n - 1), n, "A", "out") for n in range(1, 201)])
    build(wh, START + timedelta(days=199))
    feats = {
        r[0]: r[1:]
        for r in rows(
            wh,
            """
            SELECT day, y, y_lag1, y_lag6, week_avg, month_avg, quarter_avg, nbhd_prev_week,
                   nbhd_prev_month, is_wednesday, is_thursday, is_warmup, prev_week_1, prev_month_1
            FROM lag_features WHERE measure = 'amount_out' ORDER BY day""",
        )
    }
    day = lambda n: START + timedelta(days=n - 1)  # noqa: E731
    assert feats[day(1)][:2] == (1, None)
    n = 120
    y, lag1, lag6, w, m, q, nbw, nbm, wed, thu, warm, pw1, pm1 = feats[day(n)]
    assert (y, lag1, lag6) == (n, n - 1, n - 6)
    assert (w, m, q) == (n - 4, n - 15.5, n - 45.5)
    assert (nbw, nbm) == (5 * n - 35, 5 * n - 150)
    # day 120 is 2020-04-29, a Wednesday, in the week of Monday 2020-04-27
    assert day(n) == date(2020, 4, 29) and (wed, thu) == (True, False)
    prev_week = [k for k in range(1, 201) if date(2020, 4, 20) <= day(k) <= date(2020, 4, 26)]
    assert pw1 == sum(prev_week)
    assert pm1 == sum(k for k in range(1, 201) if day(k).month == 3)
    assert not warm and feats[day(91)][-3] is True  # 2020-03-31 is before April: warm-up
    assert feats[day(7)][3] is None and feats[day(8)][3] == 4  # week_avg needs 7 full days
    assert feats[day(90)][5] is None and feats[day(91)][5] == 45.5  # quarter_avg: 90 full days
    assert feats[day(30)][4] is None and feats[day(31)][4] == 15.5  # month_avg: 30 full days
    assert feats[day(9)][6] is None and feats[day(10)][6] == 15  # nbhd_prev_week: days 1..5
    assert feats[day(32)][7] is None and feats[day(33)][7] == 15  # nbhd_prev_month: days 1..5


def test_no_null_lags_after_warmup(wh):
    seed(wh, [("db1", "C1", START + timedelta(days=3 * n), 10.5, "A", "in") for n in range(150)])
    build(wh, START + timedelta(days=449))
    nulls = rows(
        wh,
        """
        SELECT count(*) FROM lag_features WHERE NOT is_warmup AND (
            y_lag6 IS NULL OR week_avg IS NULL OR month_avg IS NULL OR quarter_avg IS NULL
            OR prev_week_3 IS NULL OR prev_month_3 IS NULL OR nbhd_prev_month IS NULL)""",
    )
    assert nulls == [(0,)]
    assert rows(wh, "SELECT count(*) FROM lag_features WHERE NOT is_warmup")[0][0] > 4 * 300


def test_features_never_read_the_future(wh):
    base = [("db1", "C1", START + timedelta(days=n), 7 + n % 5, f"CP{n % 3}", "out") for n in range(300)]
    seed(wh, base)
    horizon = START + timedelta(days=299)
    build(wh, horizon)
    cutoff = START + timedelta(days=200)
    query = "SELECT * FROM lag_features WHERE day <= ? ORDER BY measure, day"
    before = rows(wh, query, [cutoff])
    changed = [r if r[2] <= cutoff else (*r[:3], r[3] * 100, "NEW", r[5]) for r in base]
    seed(wh, changed + [("db1", "C1", cutoff + timedelta(days=1), 1e6, "X", "in")])
    build(wh, horizon)
    assert rows(wh, query, [cutoff]) == before
    assert (
        rows(
            wh,
            "SELECT count(*) FROM lag_features WHERE day > ? AND measure = 'amount_in' AND y > 0",
            [cutoff],
        )[0][0]
        == 1
    )


def test_same_customer_id_in_two_tenants_stays_two_customers(wh):
    seed(wh, [("db1", "C1", START, 10, "A", "in"), ("db2", "C1", START, 99, "A", "in")])
    build(wh, START + timedelta(days=3), keys=("db1.C1", "db2.C1"))
    assert rows(
        wh,
        "SELECT partition_key, amount_in FROM customer_series "
        "WHERE grain = 'day' AND period_start = ? ORDER BY 1",
        [START],
    ) == [("db1.C1", 10), ("db2.C1", 99)]


def test_one_transaction_customer_and_future_dates(wh):
    seed(wh, [("db1", "C1", START, 10, "A", "in"), ("db1", "C2", date(2031, 1, 1), 5, "A", "in")])
    with wh.connect() as con:
        horizon = series_horizon(con, today=date(2020, 3, 1))
        assert horizon == START and future_transactions(con, horizon) == 1
    build(wh, horizon, keys=("db1.C1", "db1.C2"))
    assert rows(wh, "SELECT partition_key, count(*) FROM customer_series WHERE grain = 'day' GROUP BY 1") == [
        ("db1.C1", 1)
    ]  # C2 has only a future transaction: no series at all
    assert rows(wh, "SELECT count(*), bool_and(is_warmup) FROM lag_features") == [(4, True)]


def test_unknown_customer_key_is_refused(wh):
    seed(wh, [("db1", "C1", START, 10, "A", "in")])
    with pytest.raises(KeyError, match="db9.C1"), wh.connect() as con:
        write_customer_series(con, ["db9.C1"], START)


def test_short_history_is_marked_not_dropped(wh):
    busy = [("db1", "C1", START + timedelta(days=n // 5), 1, "A", "in") for n in range(5 * 90)]
    quiet = [("db1", "C2", START + timedelta(days=10 * n), 1, "A", "in") for n in range(9)]
    seed(wh, busy + quiet)
    with wh.connect() as con:
        write_customer_series(
            con, ["db1.C1", "db1.C2"], START + timedelta(days=89), min_monthly_transactions=100
        )
    assert rows(wh, "SELECT partition_key, sufficient_history FROM customer_history ORDER BY 1") == [
        ("db1.C1", True),
        ("db1.C2", False),
    ]


def test_the_data_checks_pass_on_built_tables_and_catch_each_fault(wh):
    """Zero on what the pipeline writes; each injected fault is counted by its own check."""
    horizon = START + timedelta(days=200)
    seed(
        wh,
        [
            ("db1", k, START + timedelta(days=d), 10, "A", "in")
            for k in ("C1", "C2")
            for d in range(0, 200, 3)
        ],
    )
    build(wh, horizon, keys=("db1.C1", "db1.C2"))
    with wh.connect() as con:
        register_run_customers(con, ["db1.C1", "db1.C2"])
        checks = {
            "periods": lambda: duplicate_periods(con),
            "calendar": lambda: calendar_gaps(con, horizon),
            "lag days": lambda: duplicate_lag_days(con),
            "null lags": lambda: null_lags_after_warmup(con),
        }
        assert {name: check() for name, check in checks.items()} == dict.fromkeys(checks, 0)
        assert calendar_gaps(con, horizon + timedelta(days=1)) == 2  # days stop before the horizon
        faults = {
            "periods": "INSERT INTO customer_series SELECT * FROM customer_series "
            "WHERE partition_key = 'db1.C1' AND grain = 'month' LIMIT 1",
            "calendar": "DELETE FROM customer_series WHERE partition_key = 'db1.C2' AND grain = 'week' "
            "AND period_start = (SELECT min(period_start) + INTERVAL 14 DAY FROM customer_series "
            "WHERE partition_key = 'db1.C2' AND grain = 'week')",
            "lag days": "INSERT INTO lag_features SELECT * FROM lag_features "
            "WHERE partition_key = 'db1.C2' LIMIT 1",
            "null lags": "UPDATE lag_features SET month_avg = NULL WHERE partition_key = 'db1.C1' "
            "AND NOT is_warmup AND day = (SELECT max(day) FROM lag_features)",
        }
        for name, fault in faults.items():
            con.execute(fault)
            assert checks[name]() > 0, name
        con.execute("DELETE FROM customer_series WHERE partition_key = 'db1.C1' AND grain = 'quarter'")
        assert calendar_gaps(con, horizon) == 2  # C2's missing week, C1's missing grain

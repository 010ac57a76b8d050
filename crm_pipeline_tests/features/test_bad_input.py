"""The feature layer on awkward input: empty months, text amounts, batched writes."""

import sqlite3
from datetime import date, timedelta

import pytest

from crm_pipeline.features.series import write_customer_series, write_lag_features
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.helpers import extract, sqlite_runner
from crm_pipeline_tests.helpers import seed_transactions as seed

JAN = date(2020, 1, 1)
MAR = date(2020, 3, 1)


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "w.duckdb")


def test_month_without_any_row_is_zeros_not_a_gap(wh):
    """February has no transaction at all, in any tenant: its days and its month are zeros,
    March's previous-month lag reads February's 0 (not January, not NULL)."""
    seed(
        wh,
        [("db1", "C1", JAN + timedelta(days=d), 10, "A", "in") for d in range(31)]
        + [("db1", "C1", MAR + timedelta(days=d), 5, "B", "in") for d in range(31)],
    )
    with wh.connect() as con:
        write_customer_series(con, ["db1.C1"], date(2020, 3, 31))
        write_lag_features(con, ["db1.C1"])
        months = con.execute(
            "SELECT period_start, amount_in, counterparts_in FROM customer_series "
            "WHERE grain = 'month' ORDER BY 1"
        ).fetchall()
        feb_days = con.execute(
            "SELECT count(*), sum(amount_in) FROM customer_series "
            "WHERE grain = 'day' AND period_start BETWEEN '2020-02-01' AND '2020-02-29'"
        ).fetchall()
        march = con.execute(
            "SELECT DISTINCT prev_month_1, prev_month_2 FROM lag_features "
            "WHERE measure = 'amount_in' AND day >= ?",
            [MAR],
        ).fetchall()
    assert months == [(JAN, 310, 1), (date(2020, 2, 1), 0, 0), (MAR, 155, 1)]
    assert feb_days == [(29, 0)]
    assert march == [(0.0, 310.0)]


def test_amounts_stored_as_text_in_one_tenant_sum_like_numbers(tmp_path, sqlite_tenants):
    """tenant_01's schema keeps amounts in a VARCHAR column; its series equal the numeric sums."""
    path = sqlite_tenants / "tenant_01.sqlite"
    with sqlite3.connect(path) as src:
        src.executescript(
            """
            CREATE TABLE tx_text (transaction_id VARCHAR(40), account_id VARCHAR(40), booking_date DATE,
                                  amount VARCHAR(30), counterpart VARCHAR(40), direction VARCHAR(3));
            INSERT INTO tx_text SELECT transaction_id, account_id, booking_date, printf('%.2f', amount),
                                       counterpart, direction FROM transactions;
            DROP TABLE transactions;
            ALTER TABLE tx_text RENAME TO transactions;
            """
        )
        text_rows = src.execute("SELECT count(*) FROM transactions WHERE typeof(amount) = 'text'").fetchone()
        assert text_rows[0] == src.execute("SELECT count(*) FROM transactions").fetchone()[0] > 0
        customer, expected = src.execute(
            "SELECT account_id, round(sum(CAST(amount AS REAL)), 2) FROM transactions "
            "WHERE direction = 'out' AND booking_date BETWEEN '2019-01-01' AND '2019-01-31' "
            "GROUP BY 1 ORDER BY 1 LIMIT 1"
        ).fetchone()
    wh = Warehouse(tmp_path / "w.duckdb")
    extract(sqlite_runner(sqlite_tenants), wh)  # January 2019
    with wh.connect() as con:
        keys = [k for (k,) in con.execute("SELECT partition_key FROM customer_keys ORDER BY 1").fetchall()]
        horizon = con.execute("SELECT max(event_date) FROM raw.transactions").fetchall()[0][0]
        write_customer_series(con, keys, horizon)
        total = con.execute(
            "SELECT sum(amount_out) FROM customer_series WHERE grain = 'month' AND partition_key = ?",
            [f"tenant_01.{customer}"],
        ).fetchall()[0][0]
    assert {k.split(".")[0] for k in keys} == {"tenant_01", "tenant_02", "tenant_03"}
    assert float(total) == pytest.approx(expected)


def test_batches_write_the_same_table_and_report_progress(wh):
    seed(
        wh,
        [
            (f"db{t}", f"C{c}", JAN + timedelta(days=d), 10 * c + d % 7, f"CP{d % 3}", "out")
            for t in (1, 2)
            for c in (1, 2)
            for d in range(0, 120, 2)
        ],
    )
    keys = ["db1.C1", "db1.C2", "db2.C1", "db2.C2"]
    horizon = JAN + timedelta(days=119)
    seen = []
    with wh.connect() as con:
        write_customer_series(con, keys, horizon)
        whole = write_lag_features(con, keys)
        one_go = con.execute("SELECT * FROM lag_features ORDER BY 1, 2, 3").fetchall()
        in_batches = write_lag_features(con, keys, batch_size=3, progress=lambda *p: seen.append(p))
        batched = con.execute("SELECT * FROM lag_features ORDER BY 1, 2, 3").fetchall()
        run_customers = con.execute("SELECT count(*) FROM run_customers").fetchall()[0][0]
    assert whole == in_batches == len(one_go) == 4 * 4 * 120
    assert batched == one_go
    assert seen == [(3, 4), (4, 4)]
    assert run_customers == 4  # the asset's checks read every customer of the run afterwards

"""Encoded CRM events: stable codes, explicit none/unseen codes, ordinal interest, EUR subtotals."""

from datetime import date, timedelta

import duckdb
import pytest

from crm_pipeline.features.encoding import NONE_CODE, UNSEEN_CODE, learn_encodings, write_crm_events
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.helpers import seed_raw

D = date(2019, 5, 2)


@pytest.fixture
def wh(tmp_path) -> Warehouse:
    wh = Warehouse(tmp_path / "w.duckdb")
    seed_raw(
        wh,
        "opportunities",
        [
            {
                "opportunity_id": "O1",
                "customer_id": "C1",
                "event_date": D,
                "buy_interest": "High",
                "trading_currency": "EUR",
            },
            {
                "opportunity_id": "O2",
                "customer_id": "C1",
                "event_date": D,
                "buy_interest": "maybe",
                "trading_currency": "USD",
                "cancellation_detail": "no budget",
            },
        ],
    )
    seed_raw(
        wh,
        "quotations",
        [
            {
                "quotation_id": "Q1",
                "opportunity_id": "O1",
                "customer_id": "C1",
                "event_date": D,
                "buy_interest": "low",
                "subtotal": 1000,
                "trading_currency": "EUR",
            },
            {
                "quotation_id": "Q2",
                "opportunity_id": "O1",
                "customer_id": "C1",
                "event_date": D,
                "buy_interest": None,
                "subtotal": 200,
                "trading_currency": "USD",
                "cancellation_detail": "price too high",
            },
        ],
    )
    seed_raw(
        wh,
        "orders",
        [
            {
                "order_id": "S1",
                "quotation_id": "Q1",
                "customer_id": "C1",
                "event_date": D,
                "amount": 990,
                "trading_currency": "EUR",
            },
        ],
    )
    return wh


def events(wh: Warehouse) -> dict[tuple, tuple]:
    with wh.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT opportunity_id, quotation_id, order_id, opportunity_buy_interest, "
            "quotation_buy_interest, "
            "quotation_subtotal_eur, trading_currency_code, opportunity_cancellation_code, "
            "quotation_cancellation_code, order_cancellation_code FROM crm_events"
        ).fetchall()
    return {r[:2]: r[2:] for r in rows}


def codes(wh: Warehouse, column: str) -> dict[str, int]:
    with wh.connect(read_only=True) as con:
        return dict(
            con.execute("SELECT category, code FROM crm_encodings WHERE column_name = ?", [column]).fetchall()
        )


def test_events_join_the_process_and_encode_every_column(wh):
    with wh.connect() as con:
        assert learn_encodings(con, "r1") == 4  # EUR, USD, 'no budget', 'price too high'
        assert write_crm_events(con, ["db1.C1"]) == 3
    currency = codes(wh, "trading_currency")
    assert currency == {"EUR": 1, "USD": 2}
    e = events(wh)
    assert e[("O1", "Q1")] == ("S1", 3, 1, 1000.0, currency["EUR"], NONE_CODE, NONE_CODE, NONE_CODE)
    order, opp_int, q_int, eur, cur, _, q_cancel, _ = e[("O1", "Q2")]
    assert (order, q_int, eur, cur, q_cancel) == (None, NONE_CODE, pytest.approx(180.0), 2, 1)
    # an opportunity without quotation is still an event; an unknown interest label is 'unseen'
    assert e[("O2", None)][:2] == (None, UNSEEN_CODE) and e[("O2", None)][5] == 1


def test_codes_never_change_and_new_categories_are_appended(wh):
    with wh.connect() as con:
        learn_encodings(con, "r1")
    before = codes(wh, "trading_currency")
    seed_raw(
        wh,
        "quotations",
        [
            {
                "quotation_id": "Q9",
                "opportunity_id": "O1",
                "customer_id": "C1",
                "event_date": D,
                "subtotal": 5,
                "trading_currency": "AAA",
            },  # sorts before EUR: still gets the next code
        ],
        replace=False,
    )
    with wh.connect() as con:
        write_crm_events(con, ["db1.C1"])
    assert events(wh)[("O1", "Q9")][4] == UNSEEN_CODE  # not learned yet: explicit unseen code
    with wh.connect() as con:
        assert learn_encodings(con, "r2") == 1
        assert learn_encodings(con, "r3") == 0
        write_crm_events(con, ["db1.C1"])
    after = codes(wh, "trading_currency")
    assert after == {**before, "AAA": max(before.values()) + 1}
    assert events(wh)[("O1", "Q9")][4] == after["AAA"]
    assert events(wh)[("O1", "Q9")][3] is None  # no FX rate for AAA: no EUR subtotal, not a guess


def test_a_quotation_with_several_orders_carries_its_first_order_whole(wh):
    """Order id, date and cancellation come from one order (the earliest), not a column-wise
    minimum over several: S0 has the smaller id and S2 the earlier date and no cancellation."""
    later, first = date(2019, 5, 20), date(2019, 5, 3)
    seed_raw(
        wh,
        "orders",
        [
            {"order_id": "S0", "quotation_id": "Q2", "customer_id": "C1", "event_date": later,
             "amount": 10, "trading_currency": "USD", "cancellation_detail": "late delivery"},
            {"order_id": "S2", "quotation_id": "Q2", "customer_id": "C1", "event_date": first,
             "amount": 10, "trading_currency": "USD"},
            {"order_id": "S3", "quotation_id": "Q2", "customer_id": "C1", "event_date": first,
             "amount": 10, "trading_currency": "USD", "cancellation_detail": "late delivery"},
        ],
        replace=False,
    )  # fmt: skip
    with wh.connect() as con:
        learn_encodings(con, "r1")
        assert write_crm_events(con, ["db1.C1"]) == 3  # still one event per quotation
        order_date = con.execute("SELECT order_date FROM crm_events WHERE quotation_id = 'Q2'").fetchall()
    assert events(wh)[("O1", "Q2")][0] == "S2" and events(wh)[("O1", "Q2")][-1] == NONE_CODE
    assert order_date == [(first,)]


def test_a_subtotal_takes_the_rate_valid_on_its_date(wh):
    """A loaded USD history (0.8 from the quotations' day, 0.5 from the day after) replaces the
    demo's 0.9 for USD: Q2 (USD 200 that day) takes 0.8, never the later rate, and a USD quotation
    before the history starts gets no EUR subtotal, not the demo rate. EUR, with nothing loaded,
    converts at 1 and is no demo rate."""
    seed_raw(
        wh,
        "quotations",
        [{"quotation_id": "Q3", "opportunity_id": "O1", "customer_id": "C1",
          "event_date": D - timedelta(days=1), "subtotal": 50, "trading_currency": "USD"}],
        replace=False,
    )  # fmt: skip
    with wh.connect() as con:
        con.execute(
            "INSERT INTO fx_rates VALUES ('USD', ?, 0.8), ('USD', ?, 0.5)", [D, D + timedelta(days=1)]
        )
        learn_encodings(con, "r1")
        write_crm_events(con, ["db1.C1"])
        in_use = con.execute("SELECT currency, demo FROM fx_rates_in_use WHERE currency IN ('EUR', 'USD')")
        assert sorted(set(in_use.fetchall())) == [("EUR", False), ("USD", False)]  # EUR is EUR, no demo
    eur = {quotation: row[3] for (_, quotation), row in events(wh).items()}
    assert eur["Q1"] == 1000.0 and eur["Q2"] == pytest.approx(160.0) and eur["Q3"] is None


def test_a_warehouse_with_one_rate_per_currency_keeps_its_own_rates(tmp_path):
    """fx_rates before dated rates: (currency, rate_to_eur), the demo's rows among them. Opening
    the warehouse moves a rate of the user's into the dated table (valid from 1900); a demo rate
    left as shipped stays a demo rate, so a USD history loaded later replaces it whole."""
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE fx_rates (currency VARCHAR PRIMARY KEY, rate_to_eur DOUBLE NOT NULL)")
        con.execute("INSERT INTO fx_rates VALUES ('USD', 0.9), ('GBP', 1.2), ('XYZ', 2.0)")
    for _ in range(2):  # the second opening changes nothing
        with Warehouse(path).connect() as con:
            loaded = con.execute("SELECT * FROM fx_rates ORDER BY 1").fetchall()
            in_use = dict(con.execute("SELECT currency, rate_to_eur FROM fx_rates_in_use").fetchall())
            leftovers = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'fx_rates_fixed'"
            assert con.execute(leftovers).fetchall() == [(0,)]
        old = date(1900, 1, 1)
        assert loaded == [("GBP", old, 1.2), ("XYZ", old, 2.0)]
        assert in_use["USD"] == 0.9 and in_use["GBP"] == 1.2 and in_use["EUR"] == 1.0

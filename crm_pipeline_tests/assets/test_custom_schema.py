"""A user whose tenants use other table and column names writes queries in a settings file."""

import sqlite3

import yaml
from dagster import DagsterInstance, materialize

from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.definitions import build_definitions
from crm_pipeline.settings import load_settings
from crm_pipeline_tests.helpers import count

QUERIES = {
    "customers": "SELECT Kunde AS customer_id, Name AS customer_name, 'sme' AS segment, "
    "'DE' AS country, NULL AS created_date FROM Kunden",
    "transactions": "SELECT Buchung AS transaction_id, Kunde AS customer_id, Datum AS event_date, "
    "Betrag AS amount, Gegenpartei AS counterpart, "
    "CASE WHEN Betrag >= 0 THEN 'in' ELSE 'out' END AS direction FROM Zahlungen",
    "opportunities": "SELECT Nr AS opportunity_id, Kunde AS customer_id, Datum AS event_date, "
    "NULL AS buy_interest, 'EUR' AS trading_currency, NULL AS cancellation_detail FROM Chancen",
    "quotations": "SELECT Nr AS quotation_id, Chance AS opportunity_id, Kunde AS customer_id, "
    "Datum AS event_date, NULL AS buy_interest, Summe AS subtotal, 'EUR' AS trading_currency, "
    "NULL AS cancellation_detail FROM Angebote",
    "orders": "SELECT Nr AS order_id, Angebot AS quotation_id, Kunde AS customer_id, "
    "Datum AS event_date, Summe AS amount, 'EUR' AS trading_currency, "
    "NULL AS cancellation_detail FROM Auftraege",
}


def make_tenant(path, rows: int) -> None:
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE Kunden (Kunde INTEGER, Name TEXT);
        CREATE TABLE Zahlungen (Buchung INTEGER, Kunde INTEGER, Datum TEXT, Betrag NUMERIC,
                                Gegenpartei TEXT);
        CREATE TABLE Chancen (Nr INTEGER, Kunde INTEGER, Datum TEXT);
        CREATE TABLE Angebote (Nr INTEGER, Chance INTEGER, Kunde INTEGER, Datum TEXT, Summe NUMERIC);
        CREATE TABLE Auftraege (Nr INTEGER, Angebot INTEGER, Kunde INTEGER, Datum TEXT, Summe NUMERIC);
        INSERT INTO Kunden VALUES (1, 'Erste GmbH'), (2, 'Zweite AG');
        INSERT INTO Chancen VALUES (1, 1, '2019-03-02');
        INSERT INTO Angebote VALUES (1, 1, 1, '2019-03-05', 1200.50);
        INSERT INTO Auftraege VALUES (1, 1, 1, '2019-03-20', 1150.00);
        """
    )
    con.executemany(
        "INSERT INTO Zahlungen VALUES (?, ?, ?, ?, ?)",
        [
            (i, 1 + i % 2, f"2019-03-{1 + i % 28:02d}", (-1) ** i * 10.25 * i, f"IBAN{i % 3}")
            for i in range(rows)
        ],
    )
    con.commit()
    con.close()


def test_pipeline_runs_on_a_schema_with_other_names(tmp_path):
    tenants = tmp_path / "erp"
    tenants.mkdir()
    make_tenant(tenants / "werk_nord.sqlite", 40)
    make_tenant(tenants / "werk_sued.sqlite", 25)
    config = tmp_path / "crm.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "warehouse": {"path": "out/warehouse.duckdb"},
                "source": {"kind": "sqlite", "sqlite_dir": "erp", "queries": QUERIES},
            }
        )
    )
    settings = load_settings(config)
    assert settings["warehouse"]["path"] == str(tmp_path / "out" / "warehouse.duckdb")
    defs = build_definitions(settings)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            raw_assets, partition_key="2019-03-01", instance=instance, resources=defs.resources
        )
    assert result.success
    wh = defs.resources["warehouse"].open()
    assert count(wh, "SELECT count(*) FROM raw.transactions") == 65
    assert count(wh, "SELECT count(*) FROM raw.transactions WHERE direction = 'out'") == 32
    assert count(wh, "SELECT count(*) FROM raw.customers") == 4
    assert count(wh, "SELECT count(*) FROM customer_keys") == 4
    assert count(wh, "SELECT sum(subtotal) FROM raw.quotations") == 2401


def test_unknown_entity_in_queries_is_refused(tmp_path):
    import pytest

    from crm_pipeline.resources import SourceResource

    with pytest.raises(ValueError, match="unknown entity payments"):
        SourceResource(kind="sqlite", sqlite_dir=str(tmp_path), queries={"payments": "SELECT 1"}).query(
            "customers"
        )

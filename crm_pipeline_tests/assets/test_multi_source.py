"""Several sources in one deployment: SQLite tenant files and PostgreSQL databases extracted
in the same run, database names kept apart by a prefix, a clash refused before anything is read."""

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, materialize

from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.definitions import build_definitions
from crm_pipeline.settings import load_settings
from crm_pipeline_tests.helpers import count

pytestmark = pytest.mark.postgres
TENANTS = ["tenant_01", "tenant_02", "tenant_03"]
PG_ENV = "CRM_TEST_MULTI_PG"
MONTH = "2019-01-01"


def settings_file(folder: Path, sqlite_dir: Path, **server: object) -> Path:
    """A settings file with the SQLite folder (relative to the file) and the server as a further source."""
    file = folder / "settings.yaml"
    source = {
        "kind": "sqlite",
        "sqlite_dir": str(sqlite_dir.relative_to(folder)),
        "more_sources": [
            {"kind": "postgresql", "connection_string_env": PG_ENV, "include": TENANTS, **server}
        ],
    }
    file.write_text(yaml.safe_dump({"warehouse": {"path": "w.duckdb"}, "source": source}))
    return file


def run_month(settings: Path, instance: DagsterInstance):  # noqa: ANN201
    defs = build_definitions(load_settings(settings))
    result = materialize(
        raw_assets, partition_key=MONTH, instance=instance, resources=defs.resources, raise_on_error=False
    )
    return result, defs.resources["warehouse"].open()


def month_rows(warehouse) -> dict[str, int]:  # noqa: ANN001
    with warehouse.connect(read_only=True) as con:
        return dict(
            con.execute(
                "SELECT source_db, count(*) FROM raw.transactions WHERE event_date >= DATE '2019-01-01' "
                "AND event_date < DATE '2019-02-01' GROUP BY ALL ORDER BY ALL"
            ).fetchall()
        )


def test_sqlite_and_postgres_in_one_run(tmp_path, sqlite_tenants, pg_tenants, monkeypatch):
    monkeypatch.setenv(PG_ENV, pg_tenants.connection_string())
    with DagsterInstance.ephemeral() as instance:
        # Same names on both sides and no prefix: refused, naming the database and both sources.
        clash, warehouse = run_month(settings_file(tmp_path, sqlite_tenants), instance)
        assert not clash.success
        message = str(clash.failure_data_for_node("raw_transactions").error)
        assert "'tenant_01' is in both SQLite folder" in message and "postgresql server" in message
        assert "prefix" in message
        assert not Path(warehouse.path).exists(), "nothing was read, nothing written"

        result, warehouse = run_month(settings_file(tmp_path, sqlite_tenants, prefix="pg-"), instance)
        assert result.success
        assert len(instance.get_run_records()) == 2
    rows = month_rows(warehouse)
    assert sorted(rows) == sorted([*TENANTS, *(f"pg-{name}" for name in TENANTS)])
    # The same tenants on both sides: each server database matches its SQLite twin row for row.
    assert all(rows[name] == rows[f"pg-{name}"] > 0 for name in TENANTS)
    [event] = result.asset_materializations_for_node("raw_transactions")
    assert event.metadata["databases"].value == 6 and event.metadata["databases_failed"].value == 0
    assert count(warehouse, "SELECT count(DISTINCT source_db) FROM extraction_log WHERE status = 'ok'") == 6
    customers = count(warehouse, "SELECT count(*) FROM customer_keys")
    assert customers == count(warehouse, "SELECT count(DISTINCT partition_key) FROM customer_keys")
    assert customers == 2 * count(warehouse, "SELECT count(*) FROM customer_keys WHERE source_db LIKE 'pg-%'")


def test_a_second_source_failing_mid_run_keeps_every_sources_rows(
    tmp_path, sqlite_tenants, pg_tenants, monkeypatch
):
    monkeypatch.setenv(PG_ENV, pg_tenants.connection_string())
    with DagsterInstance.ephemeral() as instance:
        good, warehouse = run_month(settings_file(tmp_path, sqlite_tenants, prefix="pg-"), instance)
        assert good.success
        before = month_rows(warehouse)
        # The server's own SQL for the entity is broken: it fails after the SQLite rows were read.
        broken = {"transactions": "SELECT * FROM no_such_table"}
        failed, _ = run_month(settings_file(tmp_path, sqlite_tenants, prefix="pg-", queries=broken), instance)
    assert not failed.success
    message = str(failed.failure_data_for_node("raw_transactions").error)
    assert "no_such_table" in message and "on postgresql server" in message
    assert month_rows(warehouse) == before, "the month keeps every source's previous rows"
    with warehouse.connect(read_only=True) as con:
        statuses = dict(
            con.execute(
                "SELECT source_db, status FROM extraction_log WHERE entity = 'transactions' "
                "AND run_id = ? ORDER BY ALL",
                [failed.run_id],
            ).fetchall()
        )
    assert set(TENANTS) <= set(statuses) and "failed" in statuses.values(), statuses


def test_settings_name_a_misplaced_or_misspelt_key(tmp_path, sqlite_tenants):
    file = settings_file(tmp_path, sqlite_tenants, workers=8)
    with pytest.raises(
        ValueError, match=r"source.more_sources\[0\]: unknown setting\(s\) workers; workers apply"
    ):
        build_definitions(load_settings(file))
    file.write_text(yaml.safe_dump({"source": {"kind": "sqlite", "worker": 2}}))
    with pytest.raises(ValueError, match=r"source: unknown setting\(s\) worker$"):
        build_definitions(load_settings(file))
    file.write_text(yaml.safe_dump({"source": {"more_sources": {"kind": "postgresql"}}}))
    with pytest.raises(ValueError, match="more_sources must be a list"):
        load_settings(file)


def test_databases_command_lists_every_source(tmp_path, sqlite_tenants, pg_tenants, monkeypatch, capsys):
    from argparse import Namespace

    from crm_pipeline.cli import databases

    monkeypatch.setenv(PG_ENV, pg_tenants.connection_string())
    databases(Namespace(config=str(settings_file(tmp_path, sqlite_tenants, prefix="pg-"))))
    assert capsys.readouterr().out.split() == [*TENANTS, *(f"pg-{name}" for name in TENANTS)]

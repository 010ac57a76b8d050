"""The README's first command, small: demo generation and the whole pipeline, end to end."""

import os
import subprocess
import sys

import duckdb


def test_demo_command_runs_every_stage_and_says_how_to_open_the_ui(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    env.pop("CRM_PIPELINE_CONFIG", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crm_pipeline.cli",
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--tenants",
            "2",
            "--customers",
            "2",
            "--start",
            "2017-01-01",
            "--end",
            "2018-12-31",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dagster dev -w workspace.yaml" in proc.stdout
    assert "customer_activity" in proc.stdout
    con = duckdb.connect(str(tmp_path / "demo" / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM customer_activity").fetchall()[0][0] == 4
    assert con.execute("SELECT count(DISTINCT partition_key) FROM lag_features").fetchall()[0][0] == 4
    assert con.execute("SELECT count(DISTINCT partition_key) FROM crm_events").fetchall()[0][0] == 4
    assert con.execute("SELECT count(DISTINCT source_db) FROM raw.transactions").fetchall()[0][0] == 2
    assert con.execute("SELECT count(*) FROM extraction_log WHERE status <> 'ok'").fetchall()[0][0] == 0
    # the deep stages: both models trained and registered, every customer's events scored,
    # the flagged ones explained, and a report page per customer beside the warehouse
    registered = con.execute("SELECT DISTINCT model FROM model_registry ORDER BY 1").fetchall()
    assert registered == [("deepant",), ("lstm_autoencoder",)]
    deep = con.execute(
        "SELECT detector, count(DISTINCT partition_key), count(*) FILTER (WHERE flag) FROM anomaly_scores "
        "WHERE measure = 'crm_events' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(d, n) for d, n, _ in deep] == [("deepant", 4), ("lstm_autoencoder", 4)]
    explained = con.execute(
        "SELECT detector, count(DISTINCT (partition_key, record_id)) FROM shap_values "
        "WHERE detector IN ('deepant', 'lstm_autoencoder') GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert explained == [(d, flagged) for d, _, flagged in deep]
    pages = list((tmp_path / "demo" / "reports" / "anomalies").glob("*/customers/*.html"))
    assert len({p.name for p in pages}) == 4
    reports = tmp_path / "demo" / "reports"
    assert len(list((reports / "patterns").glob("*.png"))) == 4  # every customer's pattern plot
    assert f"{reports / 'patterns' / 'index.html'}" in proc.stdout and "/report.html" in proc.stdout
    assert con.execute("SELECT count(*) FROM evaluation_results").fetchall()[0][0] > 0


def test_databases_command_lists_the_selection(tmp_path, sqlite_tenants):
    config = tmp_path / "c.yaml"
    config.write_text(f"source:\n  kind: sqlite\n  sqlite_dir: {sqlite_tenants}\n  exclude: [tenant_01]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "crm_pipeline.cli", "databases", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["tenant_02", "tenant_03"]

"""score_customers: many customers, several detectors, written once, re-runs replace."""

import pytest

from crm_pipeline.detectors.scoring import DetectorSpec, score_customers

KEYS = ["db1.CLEAN", "db1.SHORT", "db1.SPIKY"]
SPECS = [DetectorSpec("kmeans"), DetectorSpec("sgd", {"criterion": "additive_absolute"})]


def rows(con, sql, params=()):
    return con.execute(sql, list(params)).fetchall()


def test_scores_every_series_and_records_the_short_one(planted_copy):
    planted = planted_copy
    with planted.warehouse.connect() as con:
        first = score_customers(
            con, KEYS, SPECS, "run-1", measures=["amount_out", "counterparts_out"], n_jobs=2
        )
        again = score_customers(
            con, KEYS, SPECS, "run-2", measures=["amount_out", "counterparts_out"], n_jobs=2
        )
        days = rows(
            con,
            "SELECT count(*) FROM lag_features WHERE NOT is_warmup AND partition_key = 'db1.SPIKY' "
            "AND measure = 'amount_out'",
        )[0][0]
        scores = rows(con, "SELECT count(*), count(DISTINCT run_id) FROM anomaly_scores")[0]
        summary = rows(
            con,
            "SELECT partition_key, measure, detector, days_scored, error IS NULL FROM customer_anomalies "
            "ORDER BY 1, 2, 3",
        )
        spikes = rows(
            con,
            "SELECT day FROM anomaly_scores WHERE partition_key = 'db1.SPIKY' AND measure = 'amount_out' "
            "AND detector = 'kmeans' AND flag ORDER BY 1",
        )
        short_error = rows(
            con, "SELECT DISTINCT error FROM customer_anomalies WHERE partition_key = 'db1.SHORT'"
        )
    # 2 customers x 2 measures x 2 detectors scored, the short customer recorded, not scored
    assert first == again == {"anomaly_scores": 8 * days, "failed_series": 4}
    assert scores == (8 * days, 1)  # the re-run replaced the first run's rows
    assert len(summary) == 12 and sum(ok for *_, ok in summary) == 8
    assert [d.isoformat() for (d,) in spikes] == [d.astype(str) for d in planted.spike_days]
    [(reason,)] = short_error
    assert reason.startswith("too little history: 0.1 transactions a month on average, below the minimum")


def test_short_histories_can_be_scored_on_request(planted_copy):
    planted = planted_copy
    with planted.warehouse.connect() as con:
        totals = score_customers(
            con,
            ["db1.SHORT"],
            [DetectorSpec("sgd")],
            "s",
            measures=["amount_out"],
            short_histories=True,
            n_jobs=1,
        )
    assert totals["failed_series"] == 0 and totals["anomaly_scores"] > 600


def test_a_second_detector_set_keeps_the_first_sets_rows(planted_copy):
    planted = planted_copy
    with planted.warehouse.connect() as con:
        score_customers(con, ["db1.SPIKY"], [DetectorSpec("kmeans")], "a", measures=["amount_out"], n_jobs=1)
        score_customers(
            con, ["db1.SPIKY"], [DetectorSpec("agglomerative")], "b", measures=["amount_out"], n_jobs=1
        )
        detectors = rows(
            con,
            "SELECT DISTINCT detector FROM anomaly_scores WHERE partition_key = 'db1.SPIKY' "
            "AND measure = 'amount_out' AND run_id IN ('a', 'b') ORDER BY 1",
        )
    assert detectors == [("agglomerative",), ("kmeans",)]


def test_bad_configuration_fails_before_any_write(planted_copy):
    planted = planted_copy
    with planted.warehouse.connect() as con:
        tables = "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '%anomal%'"
        assert rows(con, tables) == [(0,)]
        with pytest.raises(ValueError, match="unknown detector 'prophet'"):
            score_customers(con, KEYS, [DetectorSpec("prophet")], "x")
        with pytest.raises(ValueError, match=r"unknown measure\(s\) balance"):
            score_customers(con, KEYS, SPECS, "x", measures=["balance"])
        with pytest.raises(KeyError, match="db9.NOPE"):
            score_customers(con, ["db9.NOPE"], SPECS, "x")
        assert rows(con, tables) == [(0,)]  # nothing created, nothing written

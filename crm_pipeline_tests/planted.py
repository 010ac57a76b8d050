"""Series built to be clean and periodic, or the same with obvious planted spikes, taken
through the real feature pipeline (transactions -> series -> lag features -> detector input).
A third customer, ``db1.SHORT``, has three transactions: too little history to score."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
import pytest

from crm_pipeline.detectors.base import SeriesFrame
from crm_pipeline.detectors.scoring import load_frames
from crm_pipeline.features.series import write_customer_series, write_lag_features
from crm_pipeline.warehouse.customer_tables import register_run_customers
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.helpers import seed_transactions

START = date(2018, 1, 1)
DAYS = 730


@dataclass(frozen=True)
class Planted:
    warehouse: Warehouse
    clean: SeriesFrame
    spiky: SeriesFrame
    spike_days: list[np.datetime64]


def business_rows(customer: str, rng: np.random.Generator, spikes: dict[int, float]) -> list[tuple]:
    """Weekday supplier payments with noise, a payroll on the 25th, and ``spikes`` (day -> amount)."""
    rows = []
    for d in range(DAYS):
        day = START + timedelta(days=d)
        if day.weekday() < 5:
            rows.append(("db1", customer, day, round(float(rng.normal(1000, 120)), 2), f"S{d % 4}", "out"))
        if day.day == 25:
            rows.append(("db1", customer, day, round(float(rng.normal(6000, 200)), 2), "PAYROLL", "out"))
        if d in spikes:
            rows.append(("db1", customer, day, spikes[d], "ODD", "out"))
    return rows


@pytest.fixture(scope="session")
def planted(tmp_path_factory) -> Planted:
    rng = np.random.default_rng(7)
    wh = Warehouse(tmp_path_factory.mktemp("detectors") / "w.duckdb")
    # e* = e * N(7, 2.5) + 2 * max, as in the injection protocol: far above anything normal.
    spikes = {420: 1000 * 7 + 2 * 6600, 560: 1000 * 9 + 2 * 6600, 690: 1000 * 5 + 2 * 6600}
    short = [("db1", "SHORT", START + timedelta(days=d), 10.0, "A", "out") for d in (3, 40, 300)]
    seed_transactions(wh, business_rows("CLEAN", rng, {}) + business_rows("SPIKY", rng, spikes) + short)
    keys = ["db1.CLEAN", "db1.SHORT", "db1.SPIKY"]
    with wh.connect() as con:
        write_customer_series(con, keys, START + timedelta(days=DAYS - 1), min_monthly_transactions=5)
        write_lag_features(con, keys)
        register_run_customers(con, keys)
        frames = {(k, m): f for k, m, f in load_frames(con, ["amount_out"], DAYS)}
    spike_days = [np.datetime64(START + timedelta(days=d), "D") for d in sorted(spikes)]
    return Planted(wh, frames["db1.CLEAN", "amount_out"], frames["db1.SPIKY", "amount_out"], spike_days)


@pytest.fixture
def planted_copy(planted: Planted, tmp_path) -> Planted:
    """The planted warehouse copied for one test, so that tests writing scores stay apart."""
    copy = tmp_path / "planted.duckdb"
    shutil.copy(planted.warehouse.path, copy)
    return replace(planted, warehouse=Warehouse(copy))

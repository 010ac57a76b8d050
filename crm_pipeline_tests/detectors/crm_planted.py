"""CRM events built to be regular, or the same with one quotation 20 times its usual size,
taken through the real encoding (raw opportunities and quotations -> crm_events).
A third customer, ``db1.FEW``, has six events: fewer than a look-back window needs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pytest

from crm_pipeline.features.encoding import learn_encodings, write_crm_events
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.helpers import seed_raw

START = date(2018, 1, 1)
EVENTS = 240
PLANTED_AT = 170
KEYS = ["db1.FEW", "db1.ODD", "db1.STEADY"]


@dataclass(frozen=True)
class CrmPlanted:
    warehouse: Warehouse
    planted_record: str


def crm_rows(customer: str, n: int, rng: np.random.Generator, planted_at: int | None) -> tuple[list, list]:
    """One opportunity every third day with one quotation the same day: a weekly rhythm of
    interest, a smooth subtotal; ``planted_at``'s subtotal is 20 times the usual."""
    opportunities, quotations = [], []
    for i in range(n):
        day = START + timedelta(days=3 * i)
        interest = ("low", "medium", "high")[i % 3]
        subtotal = round(1000 + 150 * np.sin(i / 6) + float(rng.normal(0, 15)), 2)
        if i == planted_at:
            subtotal *= 20
        opportunities.append(
            {"opportunity_id": f"{customer}-O{i}", "customer_id": customer, "event_date": day,
             "buy_interest": interest, "trading_currency": "EUR"}
        )  # fmt: skip
        quotations.append(
            {"quotation_id": f"{customer}-Q{i}", "opportunity_id": f"{customer}-O{i}",
             "customer_id": customer, "event_date": day, "buy_interest": interest, "subtotal": subtotal,
             "trading_currency": "EUR"}
        )  # fmt: skip
    return opportunities, quotations


@pytest.fixture(scope="session")
def crm_planted(tmp_path_factory) -> CrmPlanted:
    rng = np.random.default_rng(3)
    wh = Warehouse(tmp_path_factory.mktemp("deep") / "w.duckdb")
    opportunities, quotations = [], []
    for customer, n, planted_at in (("STEADY", EVENTS, None), ("ODD", EVENTS, PLANTED_AT), ("FEW", 6, None)):
        o, q = crm_rows(customer, n, rng, planted_at)
        opportunities += o
        quotations += q
    seed_raw(wh, "opportunities", opportunities)
    seed_raw(wh, "quotations", quotations)
    with wh.connect() as con:
        learn_encodings(con, "seed")
        write_crm_events(con, KEYS)
    return CrmPlanted(wh, f"ODD-Q{PLANTED_AT}")


@pytest.fixture
def crm_planted_copy(crm_planted: CrmPlanted, tmp_path) -> CrmPlanted:
    """A private copy for tests that write."""
    path = tmp_path / "w.duckdb"
    shutil.copy(crm_planted.warehouse.path, path)
    return CrmPlanted(Warehouse(path), crm_planted.planted_record)

"""The demo generator: deterministic, realistic shapes, planted anomalies with labels."""

from collections import Counter
from datetime import date

import pytest

from crm_pipeline.demo.generator import DemoSpec, generate_tenants
from crm_pipeline.features.series import MIN_MONTHLY_TRANSACTIONS
from crm_pipeline_tests.conftest import SMALL_SPEC

SPEC = DemoSpec(tenants=2, customers_per_tenant=6, start=date(2012, 1, 1), end=date(2016, 12, 31), seed=3)


def test_same_seed_same_data_other_seed_other_data():
    a = [t.tables for t in generate_tenants(SPEC)]
    b = [t.tables for t in generate_tenants(SPEC)]
    assert a == b
    c = [t.tables for t in generate_tenants(DemoSpec(**{**SPEC.__dict__, "seed": 4}))]
    assert a != c


def test_tables_link_up_and_carry_the_crm_columns():
    tenant = next(generate_tenants(SPEC))
    t = tenant.tables
    opp_ids = {r[0] for r in t["opportunities"].rows}
    quote_ids = {r[0] for r in t["quotations"].rows}
    assert {r[1] for r in t["quotations"].rows} <= opp_ids
    assert {r[1] for r in t["customer_orders"].rows} <= quote_ids
    assert {"buy_interest", "trading_currency", "cancellation_detail"} <= set(t["quotations"].columns)
    assert all(r[2] <= "2016-12-31" for name in ("transactions",) for r in t[name].rows)


def test_periodic_payments_exist():
    tenant = next(generate_tenants(SPEC))
    by_customer_cp = Counter((r[1], r[4]) for r in tenant.tables["transactions"].rows)
    # every customer has counterparts paid at least monthly over years (periodic payments)
    heavy = {cust for (cust, _), n in by_customer_cp.items() if n >= 40}
    assert len(heavy) == SPEC.customers_per_tenant


def test_planted_anomalies_are_labelled_and_stand_out():
    tenants = list(generate_tenants(SPEC))
    labels = [r for t in tenants for r in t.tables["anomaly_labels"].rows]
    assert {r[4] for r in labels} >= {"spike"}
    labelled = {r[1] for r in labels}
    spikes = {r[1] for r in labels if r[4] == "spike"}
    for tenant in tenants:
        rows = tenant.tables["transactions"].rows
        for customer in {r[1] for r in rows}:
            normal = [r[3] for r in rows if r[1] == customer and r[0] not in labelled]
            planted = [r[3] for r in rows if r[1] == customer and r[0] in spikes]
            # e* = e * N(7, 2.5) + 2 * max: always above twice the customer's largest amount
            assert all(p > 2 * max(normal) for p in planted)


def test_default_size_is_like_the_paper():
    spec = DemoSpec()
    assert spec.tenants == 22 and spec.start.year == 2008 and spec.end.year == 2019
    assert SMALL_SPEC.tenants == 3


def test_most_demo_customers_have_enough_history_a_few_do_not():
    """With the default minimum, the demo's detectors score most customers and still show the
    marking of short histories on a few (months counted as customer_history counts them)."""
    spec = DemoSpec(tenants=4)
    means = []
    for tenant in generate_tenants(spec):
        dates: dict[str, list[str]] = {}
        for row in tenant.tables["transactions"].rows:
            dates.setdefault(row[1], []).append(row[2])
        for days in dates.values():
            first = date.fromisoformat(min(days))
            months = (spec.end.year - first.year) * 12 + spec.end.month - first.month + 1
            means.append(len(days) / months)
    short = sum(m < MIN_MONTHLY_TRANSACTIONS for m in means) / len(means)
    assert 0 < short <= 0.2, f"{short:.0%} of demo customers below {MIN_MONTHLY_TRANSACTIONS}/month"


def test_bad_spec_is_refused():
    with pytest.raises(ValueError, match="at least one tenant"):
        next(generate_tenants(DemoSpec(tenants=0)))

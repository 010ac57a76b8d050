"""Deterministic synthetic multi-tenant CRM and transaction data with planted anomalies.

Each tenant database holds accounts, opportunities -> quotations -> customer orders
(the CRM paper's columns) and corporate transactions (the bank paper's: customer, date,
amount, counterpart, direction). Series carry weekly and monthly periodic payments,
yearly seasonality, per-customer trends and short or long histories. Planted anomalies
are listed in ``anomaly_labels``: the ground truth detectors are scored against.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

BUY_INTEREST = ("low", "medium", "high", "very high")
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "SEK")
RARE_CURRENCIES = ("JPY", "BRL", "ZAR")
CANCELLATIONS = ("price too high", "lost to competitor", "no budget", "duplicate request")
SEGMENTS = ("retail", "sme", "corporate", "public")
COUNTRIES = ("IT", "DE", "FR", "ES", "GB", "CH", "SE", "US")
EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class DemoSpec:
    """Size and shape of the demo: defaults follow the CRM paper (22 databases, 2008-2019)."""

    tenants: int = 22
    customers_per_tenant: int = 12
    start: date = date(2008, 1, 1)
    end: date = date(2019, 12, 31)
    seed: int = 7
    anomaly_rate: float = 0.6


@dataclass
class Table:
    """Column names and row tuples of one table."""

    columns: tuple[str, ...]
    rows: list[tuple] = field(default_factory=list)


@dataclass
class Tenant:
    """One tenant database's tables, keyed by table name."""

    name: str
    tables: dict[str, Table]

    @property
    def row_count(self) -> int:
        return sum(len(t.rows) for t in self.tables.values())


def tenant_name(index: int) -> str:
    """The name of the ``index``-th tenant database (1-based)."""
    return f"tenant_{index:02d}"


def _iso(days: np.ndarray) -> list[str]:
    """Day numbers since 1970-01-01 as ISO date strings."""
    return np.datetime_as_string(days.astype("datetime64[D]"), unit="D").tolist()


def _day(d: date) -> int:
    return (d - EPOCH).days


class _TenantBuilder:
    """Builds one tenant; all randomness comes from one seeded generator."""

    def __init__(self, spec: DemoSpec, index: int) -> None:
        self.spec = spec
        self.name = tenant_name(index)
        self.rng = np.random.default_rng([spec.seed, index])
        self.tables = {
            "accounts": Table(("account_id", "account_name", "segment", "country", "created_on")),
            "opportunities": Table(
                (
                    "opportunity_id",
                    "account_id",
                    "process_date",
                    "buy_interest",
                    "trading_currency",
                    "cancellation_detail",
                )
            ),
            "quotations": Table(
                (
                    "quotation_id",
                    "opportunity_id",
                    "account_id",
                    "quotation_date",
                    "buy_interest",
                    "subtotal",
                    "trading_currency",
                    "cancellation_detail",
                )
            ),
            "customer_orders": Table(
                (
                    "order_id",
                    "quotation_id",
                    "account_id",
                    "order_date",
                    "amount",
                    "trading_currency",
                    "cancellation_detail",
                )
            ),
            "transactions": Table(
                (
                    "transaction_id",
                    "account_id",
                    "booking_date",
                    "amount",
                    "counterpart",
                    "direction",
                )
            ),
            "anomaly_labels": Table(("entity", "record_id", "account_id", "event_date", "kind")),
        }
        self.counters = {"O": 0, "Q": 0, "S": 0, "T": 0}

    def _ids(self, prefix: str, n: int) -> list[str]:
        start = self.counters[prefix]
        self.counters[prefix] = start + n
        return [f"{self.name}-{prefix}{i:07d}" for i in range(start + 1, start + n + 1)]

    def _label(self, entity: str, record_id: str, account: str, day: int, kind: str) -> None:
        self.tables["anomaly_labels"].rows.append(
            (entity, record_id, account, _iso(np.array([day]))[0], kind)
        )

    def build(self) -> Tenant:
        first, last = _day(self.spec.start), _day(self.spec.end)
        for c in range(1, self.spec.customers_per_tenant + 1):
            account = f"C{c:05d}"
            long_history = self.rng.random() < 0.6
            begin = first if long_history else int(self.rng.integers(first, last - 400))
            end = last if self.rng.random() < 0.85 else int(self.rng.integers(begin + 300, last))
            self.tables["accounts"].rows.append(
                (
                    account,
                    f"Customer {self.name[-2:]}/{c:03d}",
                    str(self.rng.choice(SEGMENTS)),
                    str(self.rng.choice(COUNTRIES)),
                    _iso(np.array([begin]))[0],
                )
            )
            self._transactions(account, begin, end)
            self._crm(account, begin, end)
        return Tenant(self.name, self.tables)

    def _shape(self, days: np.ndarray) -> np.ndarray:
        """Seasonality times trend: the multiplier of a customer's activity on each day."""
        rng = self.rng
        phase = rng.uniform(0, 365)
        season = 1 + rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * (days - phase) / 365.25)
        years = (days - days[0]) / 365.25
        growth = rng.choice([0.0, 0.0, rng.uniform(0.05, 0.25), -rng.uniform(0.03, 0.08)])
        return season * np.clip(1 + growth * years, 0.2, None)

    def _transactions(self, account: str, begin: int, end: int) -> None:
        rng = self.rng
        days = np.arange(begin, end + 1)
        shape = self._shape(days)
        n_cp = int(rng.integers(6, 30))
        weights = 1 / np.arange(1, n_cp + 1) ** 1.1
        weights /= weights.sum()
        scale = float(rng.lognormal(6, 1))
        # Irregular activity: Poisson per day, amounts log-normal, Zipf-like counterparts.
        counts = rng.poisson(rng.uniform(0.05, 0.4) * shape)
        t_days = np.repeat(days, counts)
        t_amount = rng.lognormal(np.log(scale), 0.6, t_days.size) * np.repeat(shape, counts)
        t_cp = rng.choice(n_cp, t_days.size, p=weights)
        t_dir = np.where(rng.random(t_days.size) < 0.45, "in", "out")
        # Periodic payments: a weekly one on a fixed weekday, monthly ones on fixed days.
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
        dom = days.astype("datetime64[D]") - days.astype("datetime64[D]").astype("datetime64[M]")
        dom = dom.astype(int) + 1
        # (days, amount, direction, counterparts): a weekly supplier, a monthly payroll paying
        # several employees on one day (what the periodicity rule on distinct counterparts sees),
        # and a monthly incoming payment.
        payroll = int(rng.integers(4, 10))
        periodic = [
            (days[weekday == rng.integers(0, 5)], scale * 0.8, "out", [n_cp]),
            (
                days[dom == rng.integers(1, 28)],
                scale * 3 / payroll,
                "out",
                list(range(n_cp + 3, n_cp + 3 + payroll)),
            ),
            (days[dom == rng.integers(20, 28)], scale * 5, "in", [n_cp + 2]),
        ]
        for p_days, amount, direction, cps in periodic:
            if p_days.size == 0:
                continue
            for cp in cps:
                t_days = np.concatenate([t_days, p_days])
                level = amount * np.interp(p_days, days, shape) * rng.normal(1, 0.03, p_days.size)
                t_amount = np.concatenate([t_amount, level])
                t_cp = np.concatenate([t_cp, np.full(p_days.size, cp)])
                t_dir = np.concatenate([t_dir, np.full(p_days.size, direction)])
        order = np.argsort(t_days, kind="stable")
        t_days, t_amount, t_cp, t_dir = t_days[order], t_amount[order], t_cp[order], t_dir[order]
        planted = self._plant_transaction_anomalies(account, t_days, t_amount)
        ids = self._ids("T", t_days.size + len(planted))
        rows = list(
            zip(
                ids[: t_days.size],
                [account] * t_days.size,
                _iso(t_days),
                np.round(t_amount, 2).tolist(),
                [f"CP{int(c):04d}" for c in t_cp],
                t_dir.tolist(),
                strict=True,
            )
        )
        for offset, (day, amount, cp, kind) in enumerate(planted):
            tid = ids[t_days.size + offset]
            rows.append((tid, account, _iso(np.array([day]))[0], amount, cp, "out"))
            self._label("transactions", tid, account, day, kind)
        self.tables["transactions"].rows.extend(rows)

    def _plant_transaction_anomalies(
        self, account: str, days: np.ndarray, amounts: np.ndarray
    ) -> list[tuple[int, float, str, str]]:
        """Extra rows: amount spikes (the bank paper's e* = e*N(7, 2.5) + 2*max) and bursts."""
        rng = self.rng
        planted: list[tuple[int, float, str, str]] = []
        if days.size < 50 or rng.random() > self.spec.anomaly_rate:
            return planted
        top = float(amounts.max())
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(days.size // 5, days.size))
            spike = float(amounts[i]) * max(rng.normal(7, 2.5), 1.0) + 2 * top
            planted.append((int(days[i]), round(spike, 2), f"CPX{rng.integers(1000):04d}", "spike"))
        if rng.random() < 0.5:
            day = int(days[int(rng.integers(days.size // 5, days.size))])
            for k in range(int(rng.integers(6, 12))):
                amount = round(float(rng.choice(amounts)) * 1.5, 2)
                planted.append((day, amount, f"CPN{k:03d}{rng.integers(1000):03d}", "burst"))
        return planted

    def _crm(self, account: str, begin: int, end: int) -> None:
        """Opportunities -> quotations -> orders with the CRM paper's columns."""
        rng = self.rng
        days = np.arange(begin, end + 1)
        shape = self._shape(days)
        home = str(rng.choice(CURRENCIES, p=[0.5, 0.25, 0.1, 0.1, 0.05]))
        level = float(rng.lognormal(8.5, 0.8))
        interest_p = rng.dirichlet(np.ones(len(BUY_INTEREST)) * 2)
        o_days = np.repeat(days, rng.poisson(rng.uniform(0.02, 0.06) * shape))
        o_ids = self._ids("O", o_days.size)
        anomalous = o_days.size > 20 and rng.random() < self.spec.anomaly_rate
        odd = set(rng.choice(o_days.size, 2, replace=False).tolist()) if anomalous else set()
        for k, (oid, day) in enumerate(zip(o_ids, o_days.tolist(), strict=True)):
            currency = home if rng.random() < 0.95 else str(rng.choice(CURRENCIES))
            interest = str(rng.choice(BUY_INTEREST, p=interest_p))
            cancel = str(rng.choice(CANCELLATIONS)) if rng.random() < 0.12 else None
            self.tables["opportunities"].rows.append(
                (oid, account, _iso(np.array([day]))[0], interest, currency, cancel)
            )
            for qid in self._ids("Q", int(rng.integers(1, 3))):
                q_day = min(day + int(rng.integers(0, 21)), end)
                subtotal = level * float(np.interp(q_day, days, shape)) * rng.lognormal(0, 0.25)
                q_currency, q_cancel = currency, None
                if k in odd:
                    kind = str(rng.choice(["subtotal", "currency", "cancellation"]))
                    if kind == "subtotal":
                        subtotal *= rng.uniform(12, 30)
                    elif kind == "currency":
                        q_currency = str(rng.choice(RARE_CURRENCIES))
                    else:
                        q_cancel = "cancelled after approval"
                    self._label("quotations", qid, account, q_day, f"quotation_{kind}")
                    odd.discard(k)
                elif rng.random() < 0.1:
                    q_cancel = str(rng.choice(CANCELLATIONS))
                self.tables["quotations"].rows.append(
                    (
                        qid,
                        oid,
                        account,
                        _iso(np.array([q_day]))[0],
                        str(rng.choice(BUY_INTEREST, p=interest_p)),
                        round(subtotal, 2),
                        q_currency,
                        q_cancel,
                    )
                )
                if q_cancel is None and cancel is None and rng.random() < 0.55:
                    s_day = min(q_day + int(rng.integers(1, 31)), end)
                    self.tables["customer_orders"].rows.append(
                        (
                            self._ids("S", 1)[0],
                            qid,
                            account,
                            _iso(np.array([s_day]))[0],
                            round(subtotal * rng.uniform(0.9, 1.0), 2),
                            q_currency,
                            str(rng.choice(CANCELLATIONS)) if rng.random() < 0.04 else None,
                        )
                    )


def generate_tenants(spec: DemoSpec) -> Iterator[Tenant]:
    """Yield the demo's tenant databases one at a time (memory stays per-tenant)."""
    if spec.tenants < 1 or spec.customers_per_tenant < 1:
        raise ValueError("a demo needs at least one tenant and one customer per tenant")
    if spec.end <= spec.start + timedelta(days=400):
        raise ValueError("the demo period must span more than 400 days")
    for index in range(1, spec.tenants + 1):
        yield _TenantBuilder(spec, index).build()

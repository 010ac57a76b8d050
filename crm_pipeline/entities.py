"""The entities the pipeline extracts: the column contract between sources and warehouse.

Every extraction query, the demo's or a user's, returns these column names; the
warehouse casts them to these DuckDB types. Monthly entities carry ``event_date``,
the column their month partitions are cut on.
"""

from __future__ import annotations

from dataclasses import dataclass

PARTITION_COLUMN = "event_date"


@dataclass(frozen=True)
class Entity:
    """One extracted table: its columns (name -> DuckDB type) and the key within a database."""

    name: str
    columns: dict[str, str]
    key: str
    monthly: bool = True

    @property
    def required_non_null(self) -> tuple[str, ...]:
        """Columns a row cannot lack: the key, the customer and (monthly) the event date."""
        cols = [self.key, "customer_id"] if self.key != "customer_id" else [self.key]
        return tuple(cols + ([PARTITION_COLUMN] if self.monthly else []))


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "customers",
            {
                "customer_id": "VARCHAR",
                "customer_name": "VARCHAR",
                "segment": "VARCHAR",
                "country": "VARCHAR",
                "created_date": "DATE",
            },
            key="customer_id",
            monthly=False,
        ),
        Entity(
            "opportunities",
            {
                "opportunity_id": "VARCHAR",
                "customer_id": "VARCHAR",
                "event_date": "DATE",
                "buy_interest": "VARCHAR",
                "trading_currency": "VARCHAR",
                "cancellation_detail": "VARCHAR",
            },
            key="opportunity_id",
        ),
        Entity(
            "quotations",
            {
                "quotation_id": "VARCHAR",
                "opportunity_id": "VARCHAR",
                "customer_id": "VARCHAR",
                "event_date": "DATE",
                "buy_interest": "VARCHAR",
                "subtotal": "DECIMAL(18,2)",
                "trading_currency": "VARCHAR",
                "cancellation_detail": "VARCHAR",
            },
            key="quotation_id",
        ),
        Entity(
            "orders",
            {
                "order_id": "VARCHAR",
                "quotation_id": "VARCHAR",
                "customer_id": "VARCHAR",
                "event_date": "DATE",
                "amount": "DECIMAL(18,2)",
                "trading_currency": "VARCHAR",
                "cancellation_detail": "VARCHAR",
            },
            key="order_id",
        ),
        Entity(
            "transactions",
            {
                "transaction_id": "VARCHAR",
                "customer_id": "VARCHAR",
                "event_date": "DATE",
                "amount": "DECIMAL(18,2)",
                "counterpart": "VARCHAR",
                "direction": "VARCHAR",
            },
            key="transaction_id",
        ),
    )
}

MONTHLY_ENTITIES: tuple[str, ...] = tuple(n for n, e in ENTITIES.items() if e.monthly)

"""Extraction queries: one SQL text per entity, the demo schema's by default.

Users whose databases name things differently override any of them in the settings
file; a query must return the entity's column names (see ``crm_pipeline.entities``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from crm_pipeline.entities import ENTITIES

SQL_DIR = Path(__file__).parent / "sql"


def default_query(entity: str) -> str:
    """The query that reads ``entity`` from the demo schema."""
    return (SQL_DIR / f"{entity}.sql").read_text()


def resolve_queries(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every entity's query: overrides where given, defaults elsewhere; unknown names refused."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(ENTITIES))
    if unknown:
        raise ValueError(
            f"queries given for unknown entit{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(unknown)}; known: {', '.join(ENTITIES)}"
        )
    empty = sorted(name for name, sql in overrides.items() if not str(sql).strip())
    if empty:
        raise ValueError(f"empty query for {', '.join(empty)}")
    return {name: overrides.get(name) or default_query(name) for name in ENTITIES}

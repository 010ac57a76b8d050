"""The DuckDB warehouse: schema, lock-aware connections and idempotent partition writes.

Every partitioned write stages rows in a temporary table, then deletes the partition's
old rows and inserts the new ones in one transaction: a re-run never duplicates rows
and a run killed half-way leaves the previous rows in place.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from crm_pipeline.entities import ENTITIES, PARTITION_COLUMN, Entity
from crm_pipeline.warehouse.keys import customer_partition_key

SCHEMA_SQL = (Path(__file__).parent / "schema.sql").read_text()
META_COLUMNS = {"source_db": "VARCHAR", "run_id": "VARCHAR", "extracted_at": "TIMESTAMP"}


_WRITER_LOCKS: dict[Path, threading.RLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> threading.RLock:
    """The in-process writer lock of one file: DuckDB's file lock only guards other processes,
    and two writing connections in one process conflict on their transactions."""
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(path.resolve(), threading.RLock())


class WarehouseLockedError(RuntimeError):
    """Another process held the DuckDB file's write lock for longer than the timeout."""


class SchemaDriftError(ValueError):
    """A source returned rows that do not fit the entity's columns; names the culprit."""


def raw_table(entity: str) -> str:
    """The qualified raw table of an entity."""
    return f"raw.{ENTITIES[entity].name}"


def create_raw_table_sql(entity: Entity) -> str:
    """DDL of one raw table: the entity's columns plus source database and run id."""
    cols = ",\n    ".join(f"{c} {t}" for c, t in {**entity.columns, **META_COLUMNS}.items())
    return f"CREATE TABLE IF NOT EXISTS raw.{entity.name} (\n    {cols}\n)"


@dataclass(frozen=True)
class Window:
    """A half-open date range ``[start, end)``: one month partition or a range of them."""

    start: date
    end: date


class Warehouse:
    """One DuckDB file. Opening it retries with back-off while another writer holds it."""

    def __init__(
        self,
        path: str | Path,
        lock_timeout_s: float = 120.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.log = logger or logging.getLogger(__name__)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the schema in place; waits up to ``lock_timeout_s`` for the lock."""
        if read_only:
            con = self._open(read_only=True)
            try:
                yield con
            finally:
                con.close()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = _writer_lock(self.path)
        if not lock.acquire(timeout=self.lock_timeout_s):
            raise WarehouseLockedError(
                f"warehouse {self.path} stayed locked by another writer in this process for "
                f"{self.lock_timeout_s:.0f}s"
            )
        try:
            con = self._open(read_only=False)
            try:
                self.ensure_schema(con)
                yield con
            finally:
                con.close()
        finally:
            lock.release()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise WarehouseLockedError(
                        f"warehouse {self.path} stayed locked by another process for "
                        f"{self.lock_timeout_s:.0f}s: {exc}. Put every step that writes it in "
                        "the 'duckdb' pool (limit 1) or stop the other process."
                    ) from exc
                self.log.info("warehouse %s is locked, retrying in %.2fs", self.path, delay)
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)

    @staticmethod
    def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
        """Create the raw schema, raw tables and bookkeeping tables if they are missing."""
        con.execute(SCHEMA_SQL)
        for entity in ENTITIES.values():
            con.execute(create_raw_table_sql(entity))


def _reject_reason_sql(entity: Entity) -> str:
    """A CASE expression naming why a staged row cannot be loaded."""
    whens = " ".join(f"WHEN {c} IS NULL THEN 'NULL in {c}'" for c in entity.required_non_null)
    return f"CASE {whens} ELSE 'outside partition window' END"


class PartitionWriter:
    """Stages one entity's batches from many databases, then swaps a partition atomically.

    Implements the runner's sink protocol (``write`` / ``discard``). ``commit`` replaces,
    for the databases that succeeded only, the rows inside ``window`` (or all rows of
    that database for an unpartitioned entity); a failed, skipped database keeps its
    previous rows.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        entity: str,
        run_id: str,
        partition: str,
        window: Window | None,
    ) -> None:
        self.con = con
        self.entity = ENTITIES[entity]
        self.run_id = run_id
        self.partition = partition
        self.window = window
        self.stage = f"stage_{self.entity.name}_{uuid.uuid4().hex[:8]}"
        cols = ", ".join(f"{c} {t}" for c, t in self.entity.columns.items())
        con.execute(f"CREATE TEMP TABLE {self.stage} ({cols}, source_db VARCHAR)")

    def write(self, database: str, batch: pa.RecordBatch) -> None:
        """Append one batch, cast to the entity's types; names a missing or unfit column."""
        names = {n.lower(): n for n in batch.schema.names}
        missing = [c for c in self.entity.columns if c not in names]
        if missing:
            raise SchemaDriftError(
                f"{self.entity.name} query result lacks column(s) {', '.join(missing)} "
                f"(got {', '.join(batch.schema.names)})"
            )
        incoming = pa.Table.from_batches([batch])
        self.con.register("incoming_batch", incoming)
        try:
            select = ", ".join(f'CAST("{names[c]}" AS {t})' for c, t in self.entity.columns.items())
            try:
                self.con.execute(
                    f"INSERT INTO {self.stage} SELECT {select}, ? FROM incoming_batch", [database]
                )
            except duckdb.Error as exc:
                raise SchemaDriftError(self._explain_cast_error(names, exc)) from exc
        finally:
            self.con.unregister("incoming_batch")

    def _explain_cast_error(self, names: dict[str, str], exc: Exception) -> str:
        """Find which column's values do not cast, for an error a user can act on."""
        for col, typ in self.entity.columns.items():
            bad = self.con.execute(
                f'SELECT CAST("{names[col]}" AS VARCHAR) FROM incoming_batch '
                f'WHERE "{names[col]}" IS NOT NULL AND TRY_CAST("{names[col]}" AS {typ}) IS NULL '
                "LIMIT 1"
            ).fetchall()
            if bad:
                return f"{self.entity.name}.{col}: value {bad[0][0]!r} is not a valid {typ}"
        return f"{self.entity.name}: {exc}"

    def discard(self, database: str) -> None:
        """Drop what was staged from a database that failed."""
        self.con.execute(f"DELETE FROM {self.stage} WHERE source_db = ?", [database])

    def commit(self, succeeded: Sequence[str]) -> dict[str, int]:
        """Swap the partition's rows for the staged ones in one transaction.

        Staged rows with a NULL in a required column, or dated outside the window, go
        to ``rejected_rows`` instead. Returns ``{"inserted": n, "deleted": n, "rejected": n}``.
        """
        con, entity = self.con, self.entity
        valid = " AND ".join(f"{c} IS NOT NULL" for c in entity.required_non_null)
        if self.window is not None:
            valid += f" AND {PARTITION_COLUMN} >= ? AND {PARTITION_COLUMN} < ?"
            window_params: list[object] = [self.window.start, self.window.end]
        else:
            window_params = []
        cols = ", ".join(entity.columns)
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE succeeded_dbs (source_db VARCHAR)")
            con.executemany("INSERT INTO succeeded_dbs VALUES (?)", [[d] for d in succeeded])
            delete_sql = (
                f"DELETE FROM raw.{entity.name} WHERE source_db IN (SELECT source_db FROM succeeded_dbs)"
            )
            if self.window is not None:
                delete_sql += f" AND {PARTITION_COLUMN} >= ? AND {PARTITION_COLUMN} < ?"
            deleted = con.execute(delete_sql, window_params).fetchone()[0]
            inserted = con.execute(
                f"INSERT INTO raw.{entity.name} ({cols}, source_db, run_id, extracted_at) "
                f"SELECT {cols}, source_db, ?, now() FROM {self.stage} WHERE {valid}",
                [self.run_id, *window_params],
            ).fetchone()[0]
            rejected = con.execute(
                f"INSERT INTO rejected_rows SELECT ?, ?, ?, source_db, {_reject_reason_sql(entity)}, "
                f"to_json(s)::VARCHAR, now() FROM {self.stage} AS s WHERE NOT ({valid})",
                [self.run_id, entity.name, self.partition, *window_params],
            ).fetchone()[0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.execute(f"DROP TABLE IF EXISTS {self.stage}")
        return {"inserted": inserted, "deleted": deleted, "rejected": rejected}


def record_extraction(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    entity: str,
    partition: str,
    results: Sequence[object],
) -> None:
    """Append one row per database to ``extraction_log`` (status, rows, seconds, error)."""
    con.executemany(
        "INSERT INTO extraction_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, now())",
        [
            [run_id, entity, partition, r.database, r.status, r.rows, r.seconds, r.error]  # type: ignore[attr-defined]
            for r in results
        ],
    )


def refresh_customer_keys(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """Give every customer seen in any raw table a partition key; returns the new keys.

    Keys are only ever added: an existing customer keeps its key forever.
    """
    sources = " UNION ".join(f"SELECT DISTINCT source_db, customer_id FROM raw.{e}" for e in ENTITIES)
    new_pairs = con.execute(
        f"SELECT s.source_db, s.customer_id FROM ({sources}) AS s "
        "ANTI JOIN customer_keys k USING (source_db, customer_id) "
        "WHERE s.customer_id IS NOT NULL ORDER BY 1, 2"
    ).fetchall()
    rows = [(db, cid, customer_partition_key(db, cid), run_id) for db, cid in new_pairs]
    if rows:
        con.execute("BEGIN TRANSACTION")
        con.executemany("INSERT INTO customer_keys VALUES (?, ?, ?, ?, now())", rows)
        con.execute("COMMIT")
    return [r[2] for r in rows]


def new_run_id() -> str:
    """A run id for work started outside Dagster (the CLI, tests)."""
    return f"local-{uuid.uuid4().hex[:12]}"

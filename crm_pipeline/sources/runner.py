"""Run one query in every selected database, in parallel, streaming batches to a sink.

Like SQL Server's ``sp_ineachdb``: list the databases, filter them, run the same SQL in
each. Worker threads fetch; the calling thread alone hands batches to the sink (DuckDB
has a single writer), through a bounded queue so memory stays flat however many rows
a database holds.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import pyarrow as pa

from crm_pipeline.sources.dialects import Dialect, SourceError
from crm_pipeline.sources.selection import DatabaseFilter, DatabaseInfo

ErrorPolicy = Literal["fail", "skip"]
ERROR_POLICIES: tuple[str, ...] = ("fail", "skip")


class BatchSink(Protocol):
    """Where the runner delivers rows: ``write`` batches, ``discard`` a failed database's."""

    def write(self, database: str, batch: pa.RecordBatch) -> None: ...

    def discard(self, database: str) -> None: ...


class ExtractionError(RuntimeError):
    """A run failed under the ``fail`` policy; ``database`` names the first broken one."""

    def __init__(self, message: str, database: str | None, summary: RunSummary) -> None:
        super().__init__(message)
        self.database = database
        self.summary = summary


@dataclass
class DatabaseResult:
    """What happened in one database: rows delivered, seconds spent, error if any."""

    database: str
    status: Literal["pending", "ok", "failed", "cancelled"] = "pending"
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RunSummary:
    """Per-database results of one run, in database-name order."""

    results: list[DatabaseResult] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.results if r.status == "ok")

    @property
    def succeeded(self) -> list[str]:
        return [r.database for r in self.results if r.status == "ok"]

    @property
    def failed(self) -> list[DatabaseResult]:
        return [r for r in self.results if r.status == "failed"]


class _Cancelled(Exception):
    """Raised inside a worker when the run was stopped by another database's failure."""


class EachDbRunner:
    """Runs a query in each database of a source (``sp_ineachdb`` for any dialect)."""

    def __init__(
        self,
        dialect: Dialect,
        database_filter: DatabaseFilter | None = None,
        workers: int = 4,
        batch_size: int = 10_000,
        on_error: ErrorPolicy = "fail",
        logger: logging.Logger | None = None,
        prefix: str = "",
    ) -> None:
        if on_error not in ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {ERROR_POLICIES}, got {on_error!r}")
        if workers < 1 or batch_size < 1:
            raise ValueError("workers and batch_size must be at least 1")
        self.dialect = dialect
        self.database_filter = database_filter or DatabaseFilter()
        self.workers = workers
        self.batch_size = batch_size
        self.on_error = on_error
        self.log = logger or logging.getLogger(__name__)
        self.prefix = prefix
        self._warned: set[str] = set()

    def databases(self) -> list[str]:
        """The databases this runner visits, sorted, as the warehouse names them (``prefix`` + name)."""
        listed = self.dialect.list_databases()
        ignore_case = self.dialect.names_ignore_case
        self._warn_unmatched(listed, ignore_case)
        return [self.prefix + d.name for d in self.database_filter.select(listed, ignore_case=ignore_case)]

    def _warn_unmatched(self, listed: list[DatabaseInfo], ignore_case: bool) -> None:
        """Warn, once per runner, of an include name or a name pattern that matches no database
        (a typo, the wrong case where case counts, SQL Server's brackets in a pattern)."""
        db_filter, where = self.database_filter, self.dialect.describe()
        for name in db_filter.unknown_includes(listed, ignore_case=ignore_case):
            near = " or ".join(sorted(repr(d.name) for d in listed if d.name.casefold() == name.casefold()))
            hint = f" (database names are case-sensitive there: did you mean {near}?)" if near else ""
            self._warn_once(f"include names {name!r}, no database of {where}{hint}")
        pattern = db_filter.name_pattern
        if pattern and not DatabaseFilter(name_pattern=pattern).select(listed, ignore_case=ignore_case):
            hint = " ([...] is literal here: escape _ and % with \\)" if "[" in pattern else ""
            self._warn_once(f"name_pattern {pattern!r} matches no database of {where}{hint}")

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.log.warning("%s", message)

    def _server_name(self, name: str) -> str:
        """The database's own name on the server, from the warehouse's name for it."""
        if not name.startswith(self.prefix):
            raise ValueError(
                f"database {name!r} is not one of {self.dialect.describe()} (prefix {self.prefix!r})"
            )
        return name[len(self.prefix) :]

    def run(
        self,
        query: str,
        sink: BatchSink,
        params: Sequence[object] = (),
        databases: Sequence[str] | None = None,
    ) -> RunSummary:
        """Run ``query`` in each database and deliver every batch to ``sink``.

        ``databases`` and the names given to the sink carry the runner's ``prefix``. Under
        ``fail`` the first broken database stops the run and raises :class:`ExtractionError`;
        under ``skip`` its rows are discarded from the sink, the failure is recorded in the
        summary and the others go on.
        """
        names = list(self.databases() if databases is None else databases)
        server_names = {name: self._server_name(name) for name in names}
        summary = RunSummary([DatabaseResult(name) for name in names])
        by_name = {r.database: r for r in summary.results}
        if not names:
            self.log.warning("no database selected in %s", self.dialect.describe())
            return summary
        inbox: queue.Queue[tuple[str, str, object]] = queue.Queue(maxsize=2 * self.workers)
        stop = threading.Event()

        def put(item: tuple[str, str, object]) -> None:
            while True:
                try:
                    inbox.put(item, timeout=0.1)
                    return
                except queue.Full:
                    if stop.is_set():
                        raise _Cancelled from None

        def work(name: str) -> None:
            started = time.perf_counter()
            try:
                for batch in self.dialect.fetch_batches(server_names[name], query, params, self.batch_size):
                    if stop.is_set():
                        raise _Cancelled
                    put(("batch", name, batch))
                put(("done", name, time.perf_counter() - started))
            except _Cancelled:
                inbox.put(("cancelled", name, time.perf_counter() - started))
            except Exception as exc:  # noqa: BLE001 - any driver error is reported by name
                error = (
                    exc
                    if isinstance(exc, SourceError)
                    else SourceError(f"database {name!r}: {type(exc).__name__}: {exc}", name)
                )
                try:
                    put(("error", name, (error, time.perf_counter() - started)))
                except _Cancelled:
                    inbox.put(("cancelled", name, time.perf_counter() - started))

        first_error: SourceError | None = None
        with ThreadPoolExecutor(self.workers, thread_name_prefix="ineachdb") as pool:
            for name in names:
                pool.submit(work, name)
            pending = len(names)
            while pending:
                kind, name, payload = inbox.get()
                result = by_name[name]
                if kind == "batch":
                    if result.status == "failed" or stop.is_set():
                        continue
                    try:
                        sink.write(name, payload)  # type: ignore[arg-type]
                        result.rows += payload.num_rows  # type: ignore[attr-defined]
                    except Exception as exc:  # noqa: BLE001 - a bad batch fails its database
                        first_error = self._fail(
                            result,
                            SourceError(f"database {name!r}: {exc}", name),
                            sink,
                            stop,
                            first_error,
                        )
                    continue
                pending -= 1
                if kind == "done":
                    result.seconds = float(payload)  # type: ignore[arg-type]
                    if result.status != "failed":
                        result.status = "ok"
                        self.log.info("%s: %d rows in %.2fs", name, result.rows, result.seconds)
                elif kind == "error":
                    error, result.seconds = payload  # type: ignore[misc]
                    first_error = self._fail(result, error, sink, stop, first_error)
                else:
                    result.status = "cancelled" if result.status != "failed" else "failed"
                    result.seconds = float(payload)  # type: ignore[arg-type]
        if first_error is not None and self.on_error == "fail":
            raise ExtractionError(str(first_error), first_error.database, summary)
        return summary

    def _fail(
        self,
        result: DatabaseResult,
        error: SourceError,
        sink: BatchSink,
        stop: threading.Event,
        first_error: SourceError | None,
    ) -> SourceError | None:
        """Record one database's failure and apply the error policy."""
        if result.status == "failed":
            return first_error
        result.status = "failed"
        result.error = str(error)
        sink.discard(result.database)
        if self.on_error == "fail":
            stop.set()
            self.log.error("%s failed, stopping the run: %s", result.database, error)
        else:
            self.log.warning("%s failed, skipped: %s", result.database, error)
        return first_error or error


def select_databases(runners: Sequence[EachDbRunner]) -> list[list[str]]:
    """Each runner's databases. Rows are tagged with the database's name alone, so a name two
    sources share would merge two tenants: that raises ``ValueError`` naming both sources."""
    selected = [runner.databases() for runner in runners]
    owner: dict[str, EachDbRunner] = {}
    for runner, names in zip(runners, selected, strict=True):
        for name in names:
            first = owner.setdefault(name, runner)
            if first is not runner:
                raise ValueError(
                    f"database {name!r} is in both {first.dialect.describe()} and "
                    f"{runner.dialect.describe()}: give one of the sources a prefix"
                )
    return selected


def run_each_source(
    runs: Sequence[tuple[EachDbRunner, str, Sequence[object]]],
    sink: BatchSink,
    databases: Sequence[Sequence[str]],
) -> RunSummary:
    """Run each source's ``(runner, query, params)`` over its ``databases`` into one sink, one
    source after the other, and merge their summaries. Under ``fail`` the first broken database
    raises :class:`ExtractionError` carrying every source's results so far."""
    summary = RunSummary()
    for (runner, query, params), names in zip(runs, databases, strict=True):
        try:
            part = runner.run(query, sink, params, names)
        except ExtractionError as exc:
            exc.summary = RunSummary([*summary.results, *exc.summary.results])
            raise
        summary.results.extend(part.results)
    return summary

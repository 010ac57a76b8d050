"""Extraction speed: N PostgreSQL databases x M rows into DuckDB, against two baselines.

Side by side in one run, on one throw-away PostgreSQL server:

* ours     - ``extract_entity``: the sp_ineachdb runner (arrow-odbc, parallel workers) into
             an atomic DuckDB partition write;
* raw      - a plain sequential pyodbc ``fetchall`` of the same queries (no DuckDB load);
* pandas   - a ``pandas.read_sql`` loop over the databases, ``concat``, one DuckDB insert.

Times are the best of ``--repeat`` runs in this process. Peak memory is the peak RSS of a
fresh child process running one variant, minus that of a child that only imports. The last
line is ``RESULT rows_per_s=... speedup_vs_pandas=... speedup_vs_raw_fetch=... peak_mb=...
peak_mb_10x=...``.

    .venv/bin/python benchmarks/extraction.py                 # 20 x 50,000 rows, and 10x for memory
    .venv/bin/python benchmarks/extraction.py --databases 4 --rows 5000 --no-10x   # quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crm_pipeline.sources.dialects import PostgresDialect  # noqa: E402
from crm_pipeline.sources.queries import default_query  # noqa: E402
from crm_pipeline.sources.runner import EachDbRunner  # noqa: E402
from crm_pipeline.sources.selection import DatabaseFilter  # noqa: E402
from crm_pipeline.warehouse.extract import extract_entity  # noqa: E402
from crm_pipeline.warehouse.store import Warehouse, Window  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from measure import child_peak_mb as run_child  # noqa: E402
from measure import report_child_peak  # noqa: E402

WINDOW = Window(date(2000, 1, 1), date(2100, 1, 1))
FILL_SQL = """
CREATE TABLE transactions (
    transaction_id VARCHAR(40) PRIMARY KEY, account_id VARCHAR(40) NOT NULL,
    booking_date DATE NOT NULL, amount NUMERIC(18, 2) NOT NULL,
    counterpart VARCHAR(40), direction VARCHAR(3) NOT NULL
);
INSERT INTO transactions
SELECT 'T' || g, 'C' || (g % 500), DATE '2008-01-01' + (g % 4380),
       round((random() * 5000)::numeric, 2), 'CP' || (g % 37),
       CASE WHEN g % 3 = 0 THEN 'in' ELSE 'out' END
FROM generate_series(1, {rows}) AS g;
ANALYZE transactions;
"""


def database_names(n: int) -> list[str]:
    return [f"bench_{i:02d}" for i in range(1, n + 1)]


def load_server(connection: str, n: int, rows: int) -> None:
    """Create ``n`` databases of ``rows`` transactions each, filled server-side."""
    import pyodbc

    admin = pyodbc.connect(connection, autocommit=True)
    dialect = PostgresDialect(connection)
    for name in database_names(n):
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
        con = pyodbc.connect(dialect.connection_string_for(name), autocommit=True)
        for statement in FILL_SQL.format(rows=rows).split(";"):
            if statement.strip():
                con.execute(statement)
        con.close()
    admin.close()


def window_query(dialect: PostgresDialect) -> tuple[str, list[str]]:
    sql = dialect.date_window_query(default_query("transactions"), "event_date")
    return sql, [WINDOW.start.isoformat(), WINDOW.end.isoformat()]


def run_ours(connection: str, n: int, workdir: Path, workers: int = 4) -> int:
    dialect = PostgresDialect(connection, fetch_engine="arrow-odbc")
    runner = EachDbRunner(dialect, DatabaseFilter(include=tuple(database_names(n))), workers=workers)
    warehouse = Warehouse(workdir / f"ours-{time.monotonic_ns()}.duckdb")
    report = extract_entity(
        [(runner, default_query("transactions"))], warehouse, "transactions", "bench", "all", WINDOW
    )
    return report.inserted


def run_raw(connection: str, n: int, workdir: Path) -> int:
    import pyodbc

    dialect = PostgresDialect(connection)
    sql, params = window_query(dialect)
    total = 0
    for name in database_names(n):
        con = pyodbc.connect(dialect.connection_string_for(name))
        total += len(con.cursor().execute(sql, *params).fetchall())
        con.close()
    return total


def run_pandas(connection: str, n: int, workdir: Path) -> int:
    import warnings

    import duckdb
    import pandas as pd
    import pyodbc

    dialect = PostgresDialect(connection)
    sql, params = window_query(dialect)
    frames = []
    for name in database_names(n):
        con = pyodbc.connect(dialect.connection_string_for(name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas warns that pyodbc is not SQLAlchemy
            frame = pd.read_sql(sql, con, params=params)
        con.close()
        frames.append(frame.assign(source_db=name))
    everything = pd.concat(frames, ignore_index=True)
    db = duckdb.connect(str(workdir / f"pandas-{time.monotonic_ns()}.duckdb"))
    db.register("everything", everything)
    db.execute("CREATE TABLE transactions AS SELECT * FROM everything")
    total = db.execute("SELECT count(*) FROM transactions").fetchall()[0][0]
    db.close()
    return total


VARIANTS = {"ours": run_ours, "raw": run_raw, "pandas": run_pandas, "idle": lambda *a: 0}


def child_peak_mb(variant: str, connection: str, n: int, workdir: Path) -> float:
    """Peak RSS (MB) of a fresh process that runs one variant."""
    args = ["--child", variant, "--connection", connection, "--databases", str(n), "--workdir", str(workdir)]
    return run_child(__file__, args)


def child_main(args: argparse.Namespace) -> None:
    VARIANTS[args.child](args.connection, args.databases, Path(args.workdir))
    report_child_peak()


def timed(variant: str, connection: str, n: int, workdir: Path, repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = VARIANTS[variant](connection, n, workdir)
        best = min(best, time.perf_counter() - started)
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", type=int, default=20)
    parser.add_argument("--rows", type=int, default=50_000, help="rows per database")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-10x", dest="tenfold", action="store_false", help="skip the 10x memory run")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--connection", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    from crm_pipeline_tests.pg_local import start_server

    server = start_server()
    try:
        connection = server.connection_string()
        n, rows = args.databases, args.rows
        with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
            workdir = Path(tmp)
            print(f"loading {n} databases x {rows:,} rows ...", flush=True)
            load_server(connection, n, rows)
            results = {}
            for variant in ("raw", "pandas", "ours"):
                seconds, got = timed(variant, connection, n, workdir, args.repeat)
                assert got == n * rows, f"{variant} read {got} rows, expected {n * rows}"
                results[variant] = seconds
                print(f"{variant:>7}: {seconds:7.2f}s  {n * rows / seconds:>10,.0f} rows/s", flush=True)
            idle = child_peak_mb("idle", connection, n, workdir)
            peaks = {v: child_peak_mb(v, connection, n, workdir) - idle for v in ("raw", "pandas", "ours")}
            for variant, mb in peaks.items():
                print(f"{variant:>7}: peak {mb:7.1f} MB above an idle process ({idle:.0f} MB)")
            peak_10x = float("nan")
            if args.tenfold:
                print(f"loading {n} databases x {10 * rows:,} rows for the memory check ...", flush=True)
                load_server(connection, n, 10 * rows)
                peak_10x = child_peak_mb("ours", connection, n, workdir) - idle
                print(f"   ours: peak {peak_10x:7.1f} MB at 10x the rows")
    finally:
        server.stop()
    ours = results["ours"]
    print(
        f"ours is {results['pandas'] / ours:.2f}x pandas.read_sql and "
        f"{results['raw'] / ours:.2f}x a raw sequential pyodbc fetchall"
    )
    print(
        f"RESULT rows_per_s={n * rows / ours:.0f} speedup_vs_pandas={results['pandas'] / ours:.2f} "
        f"speedup_vs_raw_fetch={results['raw'] / ours:.2f} peak_mb={peaks['ours']:.1f} "
        f"peak_mb_10x={peak_10x:.1f}"
    )


if __name__ == "__main__":
    main()

"""Scale: hundreds of source databases and thousands of customers, against one-at-a-time baselines.

One warehouse, one persistent Dagster instance, one throw-away PostgreSQL server:

* extraction - every month from ``--sqlite-dbs`` SQLite tenant files and ``--pg-dbs`` PostgreSQL
  databases in one run (one source resource, the server in ``more_sources``); baseline: a run per
  database, timed on a sample of each kind.
* sensor     - one tick of ``customer_partitions_sensor`` registers every customer; baseline:
  adding the partitions one key at a time, on a sample. Its time is also compared with Dagster's
  sensor evaluation limit.
* backfill   - the per-customer assets over every customer in one run; baseline: a run per
  customer, on a sample, in a copy of the warehouse.
* UI         - the load time of ``customer_activity``'s partitions page in headless Chromium,
  against that of ``raw_transactions`` (a few months), with ``dagster dev`` on the same instance.

Peak memory is this process's peak RSS after each stage. The last line is ``RESULT …``.

    .venv/bin/python benchmarks/scale.py                       # 200 + 100 databases, 5,100 customers
    .venv/bin/python benchmarks/scale.py --sqlite-dbs 20 --pg-dbs 10 --customers-per-db 5  # quick look
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import duckdb  # noqa: E402
import pyodbc  # noqa: E402
import yaml  # noqa: E402
from dagster import AssetKey, DagsterInstance  # noqa: E402
from dagster._core.instance.ref import InstanceRef  # noqa: E402
from dagster._grpc.utils import default_sensor_grpc_timeout  # noqa: E402
from measure import peak_rss_mb  # noqa: E402

from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME  # noqa: E402
from crm_pipeline.resources import SourceConfig, SourceResource  # noqa: E402
from crm_pipeline_tests.pg_local import PG_PASSWORD, PG_USER, PgServer, start_server  # noqa: E402
from crm_pipeline_tests.scale import (  # noqa: E402
    ScaleSpec,
    backfill,
    customer_keys,
    extract,
    sensor_tick,
    source,
    timed,
    write_sources,
)

log = logging.getLogger("scale")
SAMPLE_DATABASES = 10
SAMPLE_KEYS = 200
SAMPLE_CUSTOMERS = 10
STORAGE_DB = "dagster_storage"
#: Dagster's switch for one planned event per asset of a single-run backfill instead of one per
#: partition (35,700 events for 5,100 customers, written one at a time).
SUBSET_PLANNED_EVENTS = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def persistent_instance(home: Path, server: PgServer | None) -> DagsterInstance:
    """An instance under ``home`` that ``dagster dev`` can open afterwards: the project's
    dagster.yaml, with its storage in a database of ``server`` when one is given."""
    home.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if server:
        with closing(pyodbc.connect(server.connection_string(), autocommit=True)) as admin:
            admin.execute(f"CREATE DATABASE {STORAGE_DB}")
        config["storage"] = {
            "postgres": {
                "postgres_db": {
                    "username": PG_USER, "password": PG_PASSWORD, "hostname": "127.0.0.1",
                    "port": server.port, "db_name": STORAGE_DB, "scheme": "postgresql+psycopg2",
                }
            }
        }  # fmt: skip
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def per_database_runs(spec: ScaleSpec, source: SourceConfig, scratch: Path) -> float:
    """Seconds per database of ``source`` when every database gets its own extraction run (sample)."""
    alone = {field: getattr(source, field) for field in SourceConfig.model_fields}
    names = sorted(SourceResource(**alone).runners()[0].databases())[:SAMPLE_DATABASES]
    with DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        for name in names:
            # A new resource: Dagster materializes a resource from its constructor arguments,
            # so a pydantic model_copy(update=...) would still read every database.
            only = alone | {"include": [name.removeprefix(source.prefix)]}
            extract(instance, SourceResource(**only), scratch, spec)
    return (time.perf_counter() - started) / len(names)


def per_key_adds(keys: list[str]) -> float:
    """Seconds per partition when partitions are added one key at a time (sample)."""
    sample = keys[:SAMPLE_KEYS]
    with DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        for key in sample:
            instance.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, [key])
    return (time.perf_counter() - started) / len(sample)


def per_customer_runs(warehouse: Path, keys: list[str], scratch: Path) -> float:
    """Seconds per customer when every customer gets its own backfill run (sample, warehouse copy)."""
    shutil.copy(warehouse, scratch)
    sample = keys[:SAMPLE_CUSTOMERS]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, sample)
        started = time.perf_counter()
        for key in sample:
            backfill(instance, scratch, [key])
    return (time.perf_counter() - started) / len(sample)


def partitions_pages(
    instance: DagsterInstance, work: Path, warehouse: Path, sqlite_dir: Path, customers: int
) -> tuple[float, float]:
    """Seconds until the partitions page shows its counts: customer_activity's, raw_transactions'."""
    from crm_pipeline_tests.browser.browser import Browser, artifacts_dir, missing_browser
    from crm_pipeline_tests.browser.ui_server import dagster_dev

    if reason := missing_browser():
        log.warning("skipping the UI measurement: %s", reason)
        return float("nan"), float("nan")
    settings = work / "settings.yaml"
    settings.write_text(
        f"warehouse: {{path: {warehouse}}}\nsource: {{kind: sqlite, sqlite_dir: {sqlite_dir}}}\n"
    )

    def load(browser: Browser, asset: str, materialized: int) -> float:
        started = time.perf_counter()
        browser.open(f"/assets/{asset}?view=partitions")
        browser.wait_for(
            f"//*[normalize-space()='Materialized ({materialized})' or "
            f"normalize-space()='Materialized ({materialized:,})']",
            f"{asset}'s {materialized} materialized partitions",
            timeout=300,
        )
        return time.perf_counter() - started

    with dagster_dev(settings, work) as ui:
        browser = Browser(ui.url, artifacts_dir("scale"))
        try:
            browser.open("/asset-groups")
            browser.dismiss_welcome()
            months = instance.get_materialized_partitions(AssetKey("raw_transactions"))
            load(browser, "raw_transactions", len(months))  # warms the browser's cache
            customers_s = load(browser, "customer_activity", customers)
            browser.screenshot("customer_partitions")
            months_s = load(browser, "raw_transactions", len(months))
        finally:
            browser.close()
    return customers_s, months_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sqlite-dbs", type=int, default=200)
    parser.add_argument("--pg-dbs", type=int, default=100)
    parser.add_argument("--customers-per-db", type=int, default=17)
    parser.add_argument("--no-ui", action="store_true", help="skip the partitions page in the browser")
    parser.add_argument(
        "--instance",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="Dagster's own storage: SQLite (dagster.yaml) or PostgreSQL (as in deploy/)",
    )
    parser.add_argument(
        "--planned-events",
        choices=("subset", "per-partition"),
        default="subset",
        help="subset: one materialization-planned event per asset of a run "
        f"({SUBSET_PLANNED_EVENTS}=1); per-partition: Dagster's default, one per customer and asset",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("dagster").setLevel(logging.WARNING)
    spec = ScaleSpec(args.sqlite_dbs, args.pg_dbs, args.customers_per_db)
    if args.planned_events == "subset":
        os.environ[SUBSET_PLANNED_EVENTS] = "1"
    server = start_server()
    work = Path(tempfile.mkdtemp(prefix="crm-scale-"))
    try:
        tenants, warehouse = work / "tenants", work / "warehouse.duckdb"
        rows = timed(lambda: write_sources(spec, tenants, server.connection_string()))
        log.info(
            "wrote %d SQLite + %d PostgreSQL databases, %d customers, %d rows in %.0fs",
            spec.sqlite_dbs, spec.pg_dbs, spec.customers, sum(rows.value.values()), rows.seconds,
        )  # fmt: skip
        instance = persistent_instance(work / "dagster_home", server if args.instance == "postgres" else None)
        both = source(spec, tenants, server.connection_string())
        run = timed(lambda: extract(instance, both, warehouse, spec))
        counts = {"sqlite": spec.sqlite_dbs, "postgresql": spec.pg_dbs}
        each = {
            config.kind: per_database_runs(spec, config, work / f"naive_{config.kind}.duckdb")
            for config in both.sources()
        }
        naive = sum(seconds * counts[kind] for kind, seconds in each.items())
        figures: dict[str, float] = {
            "extract_s": run.seconds,
            "extract_vs_run_per_db": naive / run.seconds,
            **{f"run_per_db_{kind}_s": seconds for kind, seconds in each.items()},
        }
        log.info(
            "extraction of %d SQLite + %d PostgreSQL databases in one run: %.1fs; a run per database: "
            "%s, %.1fx",
            spec.sqlite_dbs, spec.pg_dbs, run.seconds,
            ", ".join(f"{kind} {seconds:.2f}s each" for kind, seconds in each.items()),
            figures["extract_vs_run_per_db"],
        )  # fmt: skip
        figures["extract_peak_mb"] = peak_rss_mb()
        with duckdb.connect(str(warehouse), read_only=True) as con:
            extracted = con.execute("SELECT count(*) FROM raw.transactions").fetchone()[0]
        assert extracted == rows.value["transactions"], (extracted, rows.value["transactions"])

        tick = timed(lambda: sensor_tick(instance, warehouse))
        keys = customer_keys(instance)
        assert tick.value == len(keys) == spec.customers, (tick.value, len(keys))
        limit = default_sensor_grpc_timeout()
        per_key = per_key_adds(keys)
        figures |= {
            "tick_s": tick.seconds,
            "tick_share_of_limit": tick.seconds / limit,
            "tick_vs_per_key": per_key * len(keys) / tick.seconds,
        }
        log.info(
            "one sensor tick added %d partitions in %.2fs (%.0f%% of the %ds limit); one key at a time: "
            "%.1f ms each, %.0fx",
            tick.value, tick.seconds, 100 * tick.seconds / limit, limit, 1000 * per_key,
            figures["tick_vs_per_key"],
        )  # fmt: skip

        run = timed(lambda: backfill(instance, warehouse, keys))
        assert run.value.success
        naive = per_customer_runs(warehouse, keys, work / "naive_backfill.duckdb")
        figures |= {
            "backfill_s": run.seconds,
            "backfill_ms_per_customer": 1000 * run.seconds / len(keys),
            "backfill_vs_run_per_customer": naive * len(keys) / run.seconds,
            "peak_mb": peak_rss_mb(),
        }
        log.info(
            "single-run backfill of %d customers: %.0fs (%.0f ms each); a run per customer: %.1fs each, "
            "%.0fx; peak RSS %.0f MB",
            len(keys), run.seconds, figures["backfill_ms_per_customer"], naive,
            figures["backfill_vs_run_per_customer"], figures["peak_mb"],
        )  # fmt: skip
        if not args.no_ui:
            customers_s, months_s = partitions_pages(instance, work, warehouse, tenants, len(keys))
            figures |= {"partitions_page_s": customers_s, "partitions_page_vs_months": customers_s / months_s}
            log.info(
                "partitions page with %d customers: %.1fs (months page %.1fs, %.1fx)",
                len(keys), customers_s, months_s, figures["partitions_page_vs_months"],
            )  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    values = " ".join(f"{k}={v:.3g}" for k, v in figures.items())
    print(
        f"RESULT instance={args.instance} planned_events={args.planned_events} "
        f"databases={spec.sqlite_dbs + spec.pg_dbs} customers={spec.customers} {values}"
    )


if __name__ == "__main__":
    main()

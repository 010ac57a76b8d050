"""The ``crm-pipeline`` command: run the demo, generate tenant data, list source databases,
evaluate the detectors."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from datetime import date, datetime
from pathlib import Path

from crm_pipeline.demo.generator import DemoSpec, generate_tenants
from crm_pipeline.demo.writers import write_postgres, write_sqlite
from crm_pipeline.settings import CONFIG_ENV, DEMO_DIR_ENV, demo_dir, load_settings

PROJECT_DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"
log = logging.getLogger("crm_pipeline")
#: The demo's evaluation: 8 customers and ARIMA on its 8 smallest orders, to stay within minutes
#: (the full comparison is `crm-pipeline evaluate`).
DEMO_EVALUATION = {
    "ops": {
        "detector_evaluation": {
            "config": {
                "customers": 8,
                "planted_labels": True,
                "detectors": [
                    {"name": "kmeans"},
                    {"name": "agglomerative"},
                    {"name": "dbscan"},
                    {"name": "isolation_forest"},
                    {"name": "arima", "params": {"max_order": 1}},
                    *(
                        {"name": n, "params": {"criterion": "additive"}}
                        for n in ("sgd", "decision_tree", "random_forest")
                    ),
                    {"name": "svr", "params": {"kernel": "rbf", "criterion": "additive_absolute"}},
                ],
            }
        }
    }
}


#: The demo's deep training: both models, a few epochs (CPU-sized; a GPU run takes the default 30).
DEMO_DEEP = {"ops": {"deep_models": {"config": {"epochs": 4}}}}
#: The demo explains the decision tree's flags only: an isolation forest's refit and tree
#: conversion cost ~1 s a series (2 minutes of the demo); a backfill explains both by default.
DEMO_TREES = {"ops": {"tree_explanations": {"config": {"detectors": [{"name": "decision_tree"}]}}}}


def _spec(args: argparse.Namespace) -> DemoSpec:
    return DemoSpec(
        tenants=args.tenants,
        customers_per_tenant=args.customers,
        start=date.fromisoformat(args.start),
        end=date.fromisoformat(args.end),
        seed=args.seed,
    )


def generate(args: argparse.Namespace) -> None:
    """Write the demo tenants as SQLite files or into a PostgreSQL server."""
    started, rows = time.perf_counter(), 0
    connection = os.environ.get(args.connection_env) if args.postgres else None
    if args.postgres and not connection:
        sys.exit(f"--postgres needs the server's ODBC connection string in ${args.connection_env}")
    for tenant in generate_tenants(_spec(args)):
        if connection:
            write_postgres(tenant, connection)
        else:
            write_sqlite(tenant, args.out)
        rows += tenant.row_count
        log.info("%s: %d rows", tenant.name, tenant.row_count)
    where = "PostgreSQL" if connection else args.out
    log.info(
        "%d tenants, %d rows written to %s in %.1fs", args.tenants, rows, where, time.perf_counter() - started
    )


def ensure_dagster_home(base: Path) -> Path:
    """Use ``$DAGSTER_HOME`` or make ``<base>/dagster_home`` with the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or base / "dagster_home").absolute()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and PROJECT_DAGSTER_YAML.exists():
        shutil.copy(PROJECT_DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_pipeline(first_month: str, last_month: str) -> dict[str, int]:
    """Materialize every stage: all months in one run, then all customers in one run."""
    from dagster import DagsterInstance, materialize

    from crm_pipeline.assets.evaluation import detector_evaluation
    from crm_pipeline.assets.extraction import raw_assets
    from crm_pipeline.automation import CUSTOMER_ASSETS, DEEP_ASSETS, unregistered_customer_keys
    from crm_pipeline.definitions import build_definitions
    from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME

    defs = build_definitions()
    resources = defs.resources
    instance = DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    range_tags = {
        "dagster/asset_partition_range_start": first_month,
        "dagster/asset_partition_range_end": last_month,
    }
    log.info("extracting %s..%s from every tenant database (one run)", first_month, last_month)
    materialize(raw_assets, instance=instance, resources=resources, tags=range_tags, run_config=quiet)
    warehouse = resources["warehouse"].open()
    registered = set(instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME))
    new_keys = unregistered_customer_keys(warehouse, registered)
    instance.add_dynamic_partitions(CUSTOMER_PARTITIONS_NAME, new_keys)
    keys = instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME)
    log.info("customer assets for %d customers (one run)", len(keys))
    materialize(
        CUSTOMER_ASSETS,
        instance=instance,
        resources=resources,
        run_config=quiet | DEMO_TREES,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    log.info("deep models for every customer (one batched run): train, score events, explain with SHAP")
    materialize(
        DEEP_ASSETS,
        instance=instance,
        resources=resources,
        run_config=quiet | DEMO_DEEP,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
    )
    log.info("evaluating the detectors on a sample of customers (the paper's injection protocol)")
    materialize(
        [detector_evaluation], instance=instance, resources=resources, run_config=quiet | DEMO_EVALUATION
    )
    with warehouse.connect(read_only=True) as con:
        tables = [
            "raw.customers",
            "raw.opportunities",
            "raw.quotations",
            "raw.orders",
            "raw.transactions",
            "customer_keys",
            "customer_activity",
            "customer_series",
            "customer_history",
            "lag_features",
            "crm_events",
            "pattern_periodicity",
            "pattern_monthly_trend",
            "crm_encodings",
            "model_registry",
            "anomaly_scores",
            "shap_values",
            "customer_anomalies",
            "evaluation_results",
            "extraction_log",
        ]
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}


def demo(args: argparse.Namespace) -> None:
    """Generate the embedded demo, run the whole pipeline on it, say how to open the UI."""
    base = Path(args.dir).absolute()
    os.environ[DEMO_DIR_ENV] = str(base)
    os.environ.pop(CONFIG_ENV, None)
    home = ensure_dagster_home(base)
    settings = load_settings()
    tenants_dir = Path(settings["source"]["sqlite_dir"])
    if tenants_dir.exists() and args.fresh:
        shutil.rmtree(tenants_dir)
    warehouse = Path(settings["warehouse"]["path"])
    if args.fresh:
        warehouse.unlink(missing_ok=True)
    args.out = str(tenants_dir)
    args.postgres = False
    started = time.perf_counter()
    generate(args)
    counts = run_pipeline(f"{args.start[:7]}-01", f"{args.end[:7]}-01")
    print(f"\nDemo finished in {time.perf_counter() - started:.0f}s. Warehouse {warehouse}:")
    for table, count in counts.items():
        print(f"  {table:<22} {count:>9,} rows")
    print(
        "\nOpen the Dagster UI on it:\n"
        f"  export DAGSTER_HOME={home} {DEMO_DIR_ENV}={base}\n"
        "  .venv/bin/dagster dev -w workspace.yaml   # then browse http://127.0.0.1:3000\n"
        "Query the warehouse:\n"
        f"  .venv/bin/python -c \"import duckdb; print(duckdb.connect('{warehouse}', read_only=True)"
        ".sql('SELECT * FROM customer_activity LIMIT 5'))\""
    )
    reports = report_pages(warehouse)
    if reports:
        print("Open the reports in a browser:\n" + "\n".join(f"  {page}" for page in reports))


def report_pages(warehouse: Path) -> list[Path]:
    """The pattern plots' index and the newest anomaly report, where the run wrote them."""
    from crm_pipeline.assets.metadata import report_folder
    from crm_pipeline.patterns.report import INDEX

    anomalies = report_folder(warehouse, "anomalies").glob("*/report.html")
    newest = sorted(anomalies, key=lambda p: p.stat().st_mtime)[-1:]
    return [p for p in (report_folder(warehouse, "patterns", INDEX), *newest) if p.exists()]


def databases(args: argparse.Namespace) -> None:
    """Print the databases a run would visit (an ``sp_ineachdb`` dry run)."""
    from crm_pipeline.resources import SourceResource
    from crm_pipeline.sources.runner import select_databases

    source = SourceResource.from_settings(load_settings(args.config)["source"])
    for names in select_databases(source.runners()):
        for name in names:
            print(name)


def evaluate(args: argparse.Namespace) -> None:
    """Run the injection protocol on the warehouse, print Tables 2 and 3 and a RESULT line."""
    from crm_pipeline.detectors.scoring import DetectorSpec
    from crm_pipeline.evaluation.protocol import Protocol
    from crm_pipeline.evaluation.report import (
        EVALUATION_SPECS,
        NO_SCORES_NOTE,
        PAPER_BEST,
        PLANTED_NOTE,
        best_detector,
        paper_table,
        planted_left_out,
        result_line,
    )
    from crm_pipeline.evaluation.run import run_evaluation
    from crm_pipeline.resources import SourceResource, WarehouseResource

    specs = [DetectorSpec(name) for name in args.detectors] if args.detectors else EVALUATION_SPECS
    protocol = Protocol(seed=args.seed)
    settings = load_settings(args.config)
    warehouse = WarehouseResource(**settings["warehouse"]).open()
    started = time.perf_counter()
    log.info("evaluating %d detectors on up to %d customers x %s", len(specs), args.customers, args.measures)
    with warehouse.connect() as con:
        try:
            run = run_evaluation(
                con,
                specs,
                protocol,
                f"cli-{datetime.now():%Y%m%dT%H%M%S}",
                args.customers,
                args.measures,
                n_jobs=args.workers,
                progress=lambda done, total: log.info("evaluated %d/%d customers", done, total),
                labels_from=SourceResource.from_settings(settings["source"]).runners()
                if args.labels
                else None,
            )
        except ValueError as exc:
            sys.exit(f"{exc} (crm-pipeline demo builds them on the demo)")
    print(
        f"\nForecasting detectors (Table 2), {len(run.customers)} customers, "
        f"{protocol.injections} injections each:"
    )
    print(paper_table(run.summary, "forecasting"))
    print("\nUnsupervised detectors (Table 3):")
    print(paper_table(run.summary, "unsupervised"))
    if planted_left_out(run.summary):
        print(f"\n{PLANTED_NOTE}")
    print(f"\n{PAPER_BEST}; finished in {time.perf_counter() - started:.0f}s")
    line = result_line(best_detector(run.summary))
    if run.planted is not None:
        print(f"\nanomaly_scores against the {run.labels} planted labels (any measure, scored days only):")
        print(run.planted.round(3).to_markdown(index=False))
        top = best_detector(run.planted)
        line += f" labels_best={top['detector']} labels_precision={top['precision']:.3f} "
        line += f"labels_recall={top['recall']:.3f}"
    elif args.labels:
        print(f"\n{NO_SCORES_NOTE}")
    print(line)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="crm-pipeline", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    def demo_options(p: argparse.ArgumentParser) -> None:
        spec = DemoSpec()
        p.add_argument("--tenants", type=int, default=spec.tenants)
        p.add_argument("--customers", type=int, default=spec.customers_per_tenant, help="per tenant")
        p.add_argument("--start", default=spec.start.isoformat())
        p.add_argument("--end", default=spec.end.isoformat())
        p.add_argument("--seed", type=int, default=spec.seed)

    p_demo = sub.add_parser("demo", help="generate the demo and run the whole pipeline on it")
    demo_options(p_demo)
    p_demo.add_argument("--dir", default=str(demo_dir()), help="demo folder (default .demo)")
    p_demo.add_argument("--keep", dest="fresh", action="store_false", help="keep an existing warehouse")
    p_demo.set_defaults(func=demo)

    p_gen = sub.add_parser("generate", help="write demo tenant databases")
    demo_options(p_gen)
    p_gen.add_argument("--out", default=str(demo_dir() / "tenants"), help="folder for SQLite files")
    p_gen.add_argument("--postgres", action="store_true", help="load a PostgreSQL server instead")
    p_gen.add_argument("--connection-env", default="CRM_SOURCE_CONNECTION")
    p_gen.set_defaults(func=generate)

    p_dbs = sub.add_parser("databases", help="list the databases a run would visit")
    p_dbs.add_argument("--config", default=None, help=f"settings file (default ${CONFIG_ENV})")
    p_dbs.set_defaults(func=databases)

    p_eval = sub.add_parser("evaluate", help="the injection protocol: precision and recall per detector")
    p_eval.add_argument(
        "--config", default=None, help=f"settings file (default ${CONFIG_ENV}, else the demo)"
    )
    p_eval.add_argument("--customers", type=int, default=30, help="seeded sample of customers (default 30)")
    p_eval.add_argument("--measures", nargs="+", default=["amount_out", "counterparts_out"])
    p_eval.add_argument(
        "--detectors", nargs="+", help="registry names (default: the paper's full comparison)"
    )
    p_eval.add_argument("--seed", type=int, default=0)
    p_eval.add_argument(
        "--labels",
        action="store_true",
        help="the demo's planted labels: their days are no false positives of the protocol (strict "
        "precision printed beside), and anomaly_scores is counted against them",
    )
    p_eval.add_argument("--workers", type=int, default=-1, help="processes (default one per core)")
    p_eval.set_defaults(func=evaluate)
    return root


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

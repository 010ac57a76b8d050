"""Scoring speed: every detector on every customer, fanned out over the cores, against a
sequential per-customer loop of the same code, in one run.

Both variants are ``score_customers`` on the same warehouse and write the same rows (asserted
equal): ``n_jobs=1`` runs the series one after the other in this process, ``n_jobs=-1`` shares
them among one worker process per core. Memory per worker is each worker's peak RSS, read
after the first half of the customers and again after all of them: flat means it does not grow
with the number of customers. Last line: ``RESULT parallel_speedup=... customers_per_s=...``.

The data is synthetic (``benchmarks/features.py``'s generator: a year of daily transactions per
customer), the series are each customer's newest ``--days`` days of ``amount_out``. The costly
detectors run at reduced size so that 1,000 customers finish in minutes (printed at the start).

    .venv/bin/python benchmarks/scoring.py                    # 1,000 customers (~20 min on 2 cores)
    .venv/bin/python benchmarks/scoring.py --customers 200    # a quicker look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from features import customer_keys, make_warehouse  # noqa: E402

from crm_pipeline.detectors.registry import DETECTORS  # noqa: E402
from crm_pipeline.detectors.scoring import DetectorSpec, score_customers  # noqa: E402
from crm_pipeline.features.series import write_customer_series, write_lag_features  # noqa: E402
from crm_pipeline.warehouse.store import Warehouse  # noqa: E402

#: Every registry detector; the costly ones smaller than their defaults (ARIMA: 8 orders instead
#: of 64, AdaBoost: 50 estimators instead of 300, random forest: 25 trees instead of 100).
REDUCED = {"arima": {"max_order": 1}, "adaboost": {"n_estimators": 50}, "random_forest": {"n_estimators": 25}}
SPECS = [DetectorSpec(name, REDUCED.get(name, {})) for name in sorted(DETECTORS)]
SCORES_SQL = "SELECT partition_key, detector, day, score, threshold FROM anomaly_scores ORDER BY 1, 2, 3"


def worker_peaks_mb() -> list[float]:
    """Peak RSS (VmHWM) of each live joblib (loky) worker process of this process."""
    peaks = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = dict(x.split(":", 1) for x in (proc / "status").read_text().splitlines() if ":" in x)
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields["PPid"]) == os.getpid() and b"popen_loky" in command:
            peaks.append(int(fields["VmHWM"].split()[0]) / 1024)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=120, help="newest days of each series scored")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # convergence chatter of the small models
    chosen = ", ".join(f"{s.name}{dict(s.params) if s.params else ''}" for s in SPECS)
    print(f"detectors: {chosen}", flush=True)
    with tempfile.TemporaryDirectory(prefix="crm-score-") as tmp:
        path = Path(tmp) / "w.duckdb"
        horizon = make_warehouse(path, args.customers, 1)
        keys = customer_keys(path)
        with Warehouse(path).connect() as con:
            write_customer_series(con, keys, horizon, min_monthly_transactions=0)
            write_lag_features(con, keys)
            common = {"measures": ["amount_out"], "history_days": args.days}
            started = time.perf_counter()
            score_customers(con, keys, SPECS, "sequential", n_jobs=1, **common)
            sequential = time.perf_counter() - started
            expected = con.execute(SCORES_SQL).fetchall()
            print(f"sequential loop: {sequential:8.1f}s  ({len(keys)} customers)", flush=True)
            half = keys[: len(keys) // 2]
            started = time.perf_counter()
            totals = score_customers(con, half, SPECS, "parallel", n_jobs=-1, **common)
            peaks_half = worker_peaks_mb()
            totals = score_customers(con, keys[len(half) :], SPECS, "parallel", n_jobs=-1, **common)
            parallel = time.perf_counter() - started
            peaks_all = worker_peaks_mb()
            assert con.execute(SCORES_SQL).fetchall() == expected, "parallel scores differ from the loop's"
        failed = totals["failed_series"]
    workers = len(peaks_all)
    print(
        f"parallel ({workers} workers on {os.cpu_count()} cores): {parallel:8.1f}s, "
        f"same scores, {failed} failed series"
    )
    print(
        "worker peak MB after half / all customers: "
        f"{', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(peaks_half, peaks_all, strict=False))}"
    )
    speedup = sequential / parallel
    growth = max(peaks_all) / max(peaks_half)
    print(
        f"RESULT parallel_speedup={speedup:.2f} customers_per_s={len(keys) / parallel:.2f} "
        f"worker_peak_mb={max(peaks_all):.0f} worker_peak_growth={growth:.3f}"
    )


if __name__ == "__main__":
    main()

"""The Dagster UI end to end in headless Chromium, as a data engineer uses it on the demo:
the asset graph, one month launched from the launchpad, a three-customer backfill, the run and
asset pages. Screenshots of every step land in ``.test-artifacts/ui`` (``$CRM_TEST_ARTIFACTS``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterInstance, DagsterRun, RunsFilter
from dagster._core.instance.ref import InstanceRef
from selenium.webdriver.common.keys import Keys

from crm_pipeline.partitions import CUSTOMER_PARTITIONS_NAME
from crm_pipeline_tests.browser.browser import Browser, artifacts_dir, missing_browser
from crm_pipeline_tests.browser.ui_server import dagster_dev, group_members

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or "")

LOCATION = "crm_pipeline.definitions"
MONTH = "2017-03-01"
BACKFILL_CUSTOMERS = ["tenant_01.C00001", "tenant_01.C00002", "tenant_02.C00001"]
RUN_TIMEOUT_S = 240.0
#: The sensor ticks every 60 s; its first tick comes at start, before anything is extracted.
SENSOR_TIMEOUT_S = 150.0


def demo_settings(work: Path) -> Path:
    """Two small SQLite tenants and settings on them; runs in process (a step subprocess costs
    ~10 s on 2 cores: multiprocess makes this test minutes longer without showing anything new)."""
    subprocess.run(
        [sys.executable, "-m", "crm_pipeline.cli", "generate", "--tenants", "2", "--customers", "2",
         "--start", "2017-01-01", "--end", "2018-12-31", "--out", str(work / "tenants")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    settings = work / "settings.yaml"
    settings.write_text(
        "warehouse: {path: warehouse.duckdb}\n"
        "source: {kind: sqlite, sqlite_dir: tenants}\n"
        "partitions: {start: '2017-01-01'}\n"
        "execution: {executor: in_process}\n"
    )
    return settings


def wait_for_customers(instance: DagsterInstance, count: int) -> list[str]:
    """The customer partitions once the sensor (in the daemon) has added ``count`` of them."""
    deadline = time.monotonic() + SENSOR_TIMEOUT_S
    while len(keys := instance.get_dynamic_partitions(CUSTOMER_PARTITIONS_NAME)) < count:
        assert time.monotonic() < deadline, f"the sensor added {keys} within {SENSOR_TIMEOUT_S:.0f}s"
        time.sleep(1)
    return keys


def backfill_runs(instance: DagsterInstance, backfill_id: str) -> list[DagsterRun]:
    return list(instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id})))


def launch_month_from_launchpad(browser: Browser) -> str:
    """Pick the month in the job's launchpad, launch, wait for the run page to say Success."""
    browser.open(f"/locations/{LOCATION}/jobs/monthly_extraction/playground")
    field = browser.wait_for("//input[@placeholder='Partition']", "the launchpad's partition field")
    field.click()
    field.send_keys(MONTH)
    browser.wait_text(MONTH)  # the suggestion under the field
    field.send_keys(Keys.ENTER)
    browser.wait_text(f"partition: {MONTH}")
    browser.wait_text("No errors")  # the config is valid for the month
    browser.click_text("Launch Run", tag="button[not(@disabled)]")
    run_id = browser.wait_url(r"/runs/([0-9a-f-]{36})").group(1)
    browser.wait_text("RUN_SUCCESS", timeout=RUN_TIMEOUT_S)
    assert "Failure" not in browser.body_text()
    return run_id


def launch_customer_backfill(browser: Browser) -> str:
    """The job's "Materialize all" dialog: three customers picked by hand, one backfill."""
    browser.open(f"/locations/{LOCATION}/jobs/customer_backfill")
    browser.click_text("Materialize all", tag="button")
    browser.click_text("Select a partition")
    for key in BACKFILL_CUSTOMERS:
        browser.click_text(key)
    browser.click_text("Launch runs to materialize")  # closes the partition list
    browser.wait_text(f"{len(BACKFILL_CUSTOMERS)} partitions")
    browser.click_text("Launch backfill", tag="button")
    view = browser.wait_for("//a[contains(@href, '/runs/b/')]", "the toast's link to the backfill")
    backfill_id = view.get_attribute("href").rsplit("/", 1)[-1]
    browser.open(f"/runs/b/{backfill_id}")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (status := backfill_status(browser)) in ("Requested", "In progress"):
        assert time.monotonic() < deadline, f"backfill {backfill_id} still {status}"
        time.sleep(3)
        browser.driver.refresh()
    assert status == "Succeeded", f"backfill {backfill_id}: {status}"
    return backfill_id


def backfill_status(browser: Browser) -> str:
    """The backfill page's Status field (the word under the "Status" label)."""
    browser.wait_text("Partition selection")
    return browser.body_text().split("\nStatus\n", 1)[1].split("\n", 1)[0]


def show_markdown(browser: Browser, key: str) -> None:
    """Open the rendered markdown of metadata entry ``key`` (the metadata table links it)."""
    row = browser.wait_for(f"//tr[td[normalize-space()='{key}']]", f"metadata entry {key!r}")
    row.find_element("xpath", ".//*[contains(text(), 'Show Markdown')]").click()


def test_a_user_launches_a_month_and_a_customer_backfill_in_the_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shots = artifacts_dir("ui")
    settings = demo_settings(tmp_path)
    with dagster_dev(settings, tmp_path) as ui:
        monkeypatch.setenv("DAGSTER_HOME", str(ui.home))  # the instance's dagster.yaml reads it
        instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(ui.home)))
        browser = Browser(ui.url, shots)
        try:
            with browser.step("asset_graph"):
                browser.open("/asset-groups")
                browser.dismiss_welcome()
                for group in ("extraction", "customers", "features", "detection", "deep_detection"):
                    browser.wait_text(group)

            with browser.step("month_run_success"):
                launch_month_from_launchpad(browser)
            with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
                months = con.execute(
                    "SELECT DISTINCT date_trunc('month', event_date)::DATE FROM raw.transactions"
                ).fetchall()
            assert [m.isoformat() for (m,) in months] == [MONTH], "only the launched month is extracted"

            wait_for_customers(instance, 4)
            with browser.step("backfill_succeeded"):
                backfill_id = launch_customer_backfill(browser)
            runs = backfill_runs(instance, backfill_id)
            assert len(runs) == 1, "a customer backfill is one run (single-run backfill policy)"

            with browser.step("backfill_run_page"):
                browser.open(f"/runs/{runs[0].run_id}")
                browser.wait_text("RUN_SUCCESS")
                browser.wait_text("Success")

            with browser.step("asset_row_count_and_preview"):
                browser.open("/assets/customer_activity")
                row_count = browser.wait_for("//*[.='Row count']/..", "the row count")
                assert row_count.text.split() == ["Row", "count", str(len(BACKFILL_CUSTOMERS))]
                show_markdown(browser, "preview")
                for key in BACKFILL_CUSTOMERS:
                    browser.wait_text(key)

            with browser.step("asset_plot"):
                browser.open("/assets/regular_patterns")
                show_markdown(browser, "plots")
                browser.wait_for("//img[starts-with(@src, 'data:image/png')]", "the pattern plot image")

            with browser.step("partitions_page"):
                started = time.perf_counter()
                browser.open("/assets/customer_activity?view=partitions")
                browser.wait_text(f"Materialized ({len(BACKFILL_CUSTOMERS)})")
                browser.wait_text("Missing (1)")
                print(f"partitions page shown in {time.perf_counter() - started:.1f}s")
        finally:
            browser.close()
            shutil.copy(ui.log, shots / "dagster_dev.log")
    assert group_members(ui.pid) == [], "dagster dev's process group outlived the test"

"""Headless Debian Chromium driven by Selenium, with the waits and screenshots a UI test needs."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from crm_pipeline_tests.browser.ui_server import ROOT

#: Debian's packages (``apt-get install chromium chromium-driver``): no browser download.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS_ENV = "CRM_TEST_ARTIFACTS"
WAIT_S = 30.0
POLL_S = 0.25
WELCOME_WAIT_S = 10.0
#: Blueprint's dialogs fade in: a screenshot taken at once shows them half transparent.
SETTLE_S = 0.5
SKIP_WELCOME = (
    "//div[contains(@class, 'dialog')][.//*[contains(., 'Join the Dagster community')]]//button[.='Skip']"
)


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or ``None`` when they can."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    return f"{' and '.join(missing)} not installed (scripts/test installs them)" if missing else None


def artifacts_dir(name: str) -> Path:
    """Where a test's screenshots go: ``$CRM_TEST_ARTIFACTS/<name>`` (default ``.test-artifacts``)."""
    folder = Path(os.environ.get(ARTIFACTS_ENV, ROOT / ".test-artifacts")) / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def xpath_literal(text: str) -> str:
    """``text`` as an XPath string literal (XPath 1.0 has no escapes)."""
    if "'" not in text:
        return f"'{text}'"
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in text.split("'")) + ")"


class Browser:
    """One Chromium window on a Dagster webserver: navigate, wait for text, click, screenshot."""

    def __init__(self, base_url: str, artifacts: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.base_url = base_url
        self.artifacts = artifacts
        self.shots = 0

    def close(self) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        """Go to ``path`` and wait until the app has rendered its navigation."""
        self.driver.get(self.base_url + path)
        self.wait_for("//a[normalize-space()='Runs']", what="the Dagster navigation")

    def dismiss_welcome(self) -> None:
        """Skip the community dialog a fresh instance shows a second after the first page (it
        would cover the page); skipping is stored in the instance, so it never comes back."""
        with contextlib.suppress(AssertionError):
            self.wait_for(SKIP_WELCOME, "the welcome dialog", timeout=WELCOME_WAIT_S).click()

    def wait_for(self, xpath: str, what: str, timeout: float = WAIT_S) -> WebElement:
        """The first visible element at ``xpath``; fails naming ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for element in self.driver.find_elements(By.XPATH, xpath):
                    if element.is_displayed():
                        return element
            except WebDriverException:
                pass  # the page re-rendered under us: look again
            if time.monotonic() > deadline:
                where = self.driver.current_url
                raise AssertionError(f"{what} did not show within {timeout:.0f}s on {where}")
            time.sleep(POLL_S)

    def text_xpath(self, text: str, tag: str = "*") -> str:
        """The ``tag`` elements whose text contains ``text``; for any tag, the innermost ones."""
        lit = xpath_literal(text)
        if tag != "*":
            return f"//{tag}[contains(normalize-space(), {lit})]"
        return f"//*[contains(normalize-space(), {lit})][not(.//*[contains(normalize-space(), {lit})])]"

    def wait_text(self, text: str, timeout: float = WAIT_S) -> WebElement:
        return self.wait_for(self.text_xpath(text), f"text {text!r}", timeout)

    def click_text(self, text: str, tag: str = "*", timeout: float = WAIT_S) -> None:
        """Click the visible element showing ``text`` (a button, link, tab or list item)."""
        self.wait_for(self.text_xpath(text, tag), f"{tag} {text!r}", timeout).click()

    def body_text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def wait_url(self, pattern: str, timeout: float = WAIT_S) -> re.Match[str]:
        """Wait until the address matches ``pattern``; return the match."""
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.driver.current_url)):
            if time.monotonic() > deadline:
                raise AssertionError(f"address never matched {pattern!r}: {self.driver.current_url}")
            time.sleep(POLL_S)
        return match

    def screenshot(self, name: str) -> Path:
        """Save the window as ``NN_name.png`` in the artifacts folder."""
        self.shots += 1
        path = self.artifacts / f"{self.shots:02d}_{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A user step: screenshot at its end, also (as ``FAILED_name``) when it fails."""
        try:
            yield
        except BaseException:
            self.screenshot(f"FAILED_{name}")
            raise
        time.sleep(SETTLE_S)
        self.screenshot(name)

"""MinIO's embedded console (its object browser, a React app) driven in Debian's Chromium, headless.

The browser is the system's ``/usr/bin/chromium`` driven through the system's ``/usr/bin/chromedriver``
(``apt-get install -y chromium chromium-driver``), named in a ``Service`` so Selenium Manager never
looks for, or downloads, a driver or a browser. ``require_browser`` skips a test without them, or
fails it under CI=true (CI installs them: .ci/install-system-deps).

The selectors are the console's own ids (``accessKey``, ``secretKey``, ``do-login``,
``acknowledge-confirm``, ``upload-main``) and the object list's grid cells; a wait that times out fails
with the page's source, so a console that changed shows what it renders now.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
APT_INSTALL = "apt-get install -y chromium chromium-driver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
)
WAIT = 30.0
SOURCE_SHOWN = 6000  # characters of the page source quoted when a wait fails


def require_browser() -> None:
    """Skip the test without Debian's chromium and chromedriver, naming the apt command; fail under CI."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    message = f"{' and '.join(missing)} missing: {APT_INSTALL} (Debian's, as root)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI installs them (.ci/install-system-deps), so this is a broken CI set-up")
    pytest.skip(message)


def _row(name: str) -> tuple[str, str]:
    """The object list's cell naming *name* (a file, or a folder without its trailing slash)."""
    return By.XPATH, f"//div[@role='gridcell']//span[normalize-space(text())='{name}']"


class Console:
    """One logged-in console session in a headless Chromium; every step waits for what it needs."""

    def __init__(self, driver: webdriver.Chrome, url: str, evidence: Path) -> None:
        self.driver = driver
        self.url = url.rstrip("/")
        self._evidence = evidence

    def wait(self, condition: Callable[[Any], Any], what: str, within: float = WAIT) -> Any:
        """Wait for *condition*; on timeout fail naming *what*, quoting the page source (all of it is
        saved next to the test's other files)."""
        try:
            return WebDriverWait(self.driver, within).until(condition)
        except TimeoutException:
            source = self.driver.page_source
            saved = self._evidence / "page-source.html"
            saved.write_text(source)
            pytest.fail(
                f"timed out after {within:.0f} s waiting for {what} at {self.driver.current_url}; the page "
                f"source (all of it in {saved}) begins:\n{source[:SOURCE_SHOWN]}"
            )

    def login(self, user: str, password: str) -> None:
        """Log in as *user*, and acknowledge the licence notice the console shows a new browser."""
        self.driver.get(f"{self.url}/login")
        self.wait(ec.element_to_be_clickable((By.ID, "accessKey")), "the login form").send_keys(user)
        self.driver.find_element(By.ID, "secretKey").send_keys(password)
        self.driver.find_element(By.ID, "do-login").click()
        self.wait(ec.url_contains("/browser"), "the object browser after logging in")
        self.acknowledge_notice()

    def acknowledge_notice(self) -> None:
        """Close the licence notice if the console shows one (it does once per browser profile)."""
        buttons = self.driver.find_elements(By.ID, "acknowledge-confirm")
        if buttons:
            buttons[0].click()
            self.wait(
                ec.invisibility_of_element_located((By.ID, "acknowledge-confirm")), "the notice to close"
            )

    def open_bucket(self, bucket: str) -> None:
        """Show *bucket*'s top level."""
        self.driver.get(f"{self.url}/browser/{quote(bucket)}")
        self.wait(ec.element_to_be_clickable((By.ID, "upload-main")), f"bucket {bucket}'s upload button")
        self.acknowledge_notice()

    def open_folder(self, folder: str) -> None:
        """Click *folder* (``in``) in the open bucket's list, as a person does, and wait to be inside it."""
        self.wait(ec.element_to_be_clickable(_row(folder)), f"folder {folder} in the list").click()
        self.wait(ec.url_contains(quote(f"{folder}/", safe="")), f"the view of folder {folder}/")

    def open_folder_by_url(self, bucket: str, folder: str) -> None:
        """Show *bucket*'s folder *folder* (``results``) from its address."""
        self.driver.get(f"{self.url}/browser/{quote(bucket)}/{quote(f'{folder}/', safe='')}")
        self.wait(ec.element_to_be_clickable((By.ID, "upload-main")), f"{bucket}/{folder}/")
        self.acknowledge_notice()

    def upload(self, file: Path) -> None:
        """Upload *file* into the open folder through the console's upload control (its file input: the
        one of "Upload File", not "Upload Folder"), and wait for it to be listed."""
        selector = "input[type=file]:not([webkitdirectory])"
        field: WebElement = self.wait(
            ec.presence_of_element_located((By.CSS_SELECTOR, selector)), "the upload control's file input"
        )
        field.send_keys(str(file))
        self.wait(ec.visibility_of_element_located(_row(file.name)), f"{file.name} listed after the upload")

    def shows(self, name: str, within: float = WAIT) -> WebElement:
        """The list's cell for *name*, once visible."""
        element: WebElement = self.wait(
            ec.visibility_of_element_located(_row(name)), f"{name} listed", within
        )
        return element

    def screenshot(self, path: Path) -> None:
        """Save the page as a PNG."""
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(path)), f"Chromium saved no screenshot to {path}"


@contextmanager
def console(url: str, evidence: Path) -> Iterator[Console]:
    """A headless Chromium on a fresh profile under *evidence*, at the console *url*; quit at the end."""
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=evidence)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(evidence / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except WebDriverException as error:
        pytest.fail(f"Chromium did not start through {CHROMEDRIVER}: {error.msg}")
    try:
        yield Console(driver, url, evidence)
    finally:
        driver.quit()

"""End to end in a real headless Chromium: log in, see a held lock, force-clear it, see it gone."""

import os
import shutil
import tempfile
import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.test import override_settings

from tasklock import Lock
from tests.servers import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: how long a page may take on a loaded 2-core machine: only a real hang waits this long
PAGE_SECONDS = 60
#: Debian's chromium, headless, as root, with no network of its own
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
)


@pytest.fixture
def browser():
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        message = "Debian's chromium and chromium-driver are not installed"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: a missing browser is a failure)")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tasklock-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def leave_page(browser, control) -> None:
    """Click ``control`` and wait until its page is gone and the next one has loaded.

    A click returns before the navigation it starts: finding an element straight after it
    can hand back the page being left (the "Are you sure?" race)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    control.click()
    wait = WebDriverWait(browser, PAGE_SECONDS)
    wait.until(expected_conditions.staleness_of(page))
    wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")


@pytest.mark.browser
def test_force_clear_a_held_lock_through_the_admin(browser, live_server, redis_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    operator = User.objects.create_user("operator", password="s3cret-pass", is_staff=True)
    operator.user_permissions.set(
        Permission.objects.filter(codename__in=["view_heldlock", "delete_heldlock"])
    )
    name = 'report:{"game_id":42}'
    with override_settings(TASKLOCK={"CACHE": "default", "KEY_PREFIX": f"b{uuid.uuid4().hex[:10]}"}):
        held = Lock(name, timeout=300)
        neighbour = Lock("report:7", timeout=300)
        assert held.acquire() and neighbour.acquire()
        try:
            browser.get(f"{live_server.url}/admin/login/?next=/admin/tasklock/heldlock/")
            browser.find_element(By.NAME, "username").send_keys("operator")
            browser.find_element(By.NAME, "password").send_keys("s3cret-pass")
            leave_page(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))

            assert browser.title.startswith("Select held lock"), browser.title
            rows = browser.find_element(By.ID, "result_list").text
            assert name in rows and held.holder.holder in rows and "report:7" in rows
            browser.save_screenshot(str(tmp_path / "1-held-locks.png"))

            browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{name}']").click()
            Select(browser.find_element(By.NAME, "action")).select_by_value("force_clear")
            leave_page(browser, browser.find_element(By.NAME, "index"))

            assert browser.title.startswith("Are you sure?"), browser.title
            assert "Are you sure?" in browser.find_element(By.ID, "content").text
            assert name in browser.find_element(By.ID, "held-locks").text
            browser.save_screenshot(str(tmp_path / "2-confirmation.png"))
            assert held.owned(), "nothing is cleared before confirming"
            leave_page(browser, browser.find_element(By.CSS_SELECTOR, "#content form input[type=submit]"))

            assert browser.title.startswith("Select held lock"), browser.title
            assert "Force-cleared 1 held lock." in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
            rows = browser.find_element(By.ID, "result_list").text
            assert name not in rows and "report:7" in rows
            browser.save_screenshot(str(tmp_path / "3-cleared.png"))
            print(f"screenshots in {tmp_path}")
            assert not held.owned() and held.release() is False
            assert neighbour.owned()
        finally:
            neighbour.release()

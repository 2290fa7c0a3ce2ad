"""In a real headless Chromium: the "Held locks" page shows how many wait in line for a lock
and how long each has been held, and sorts by that when the column header is clicked."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Permission, User
from django.test import override_settings

from tasklock import Lock
from tests.test_admin_activity import in_line
from tests.test_browser import browser, leave_page

__all__ = ["browser"]  # the fixture, used by name


def column(driver, field: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, f"#result_list td.field-{field}")]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)  # the live server's thread sees the operator
def test_the_admin_shows_waiters_and_sorts_by_age(browser, live_server, redis_server, tmp_path):
    from selenium.webdriver.common.by import By

    operator = User.objects.create_user("watcher", password="s3cret-pass", is_staff=True)
    operator.user_permissions.set(Permission.objects.filter(codename="view_heldlock"))
    with override_settings(TASKLOCK={"CACHE": "default", "KEY_PREFIX": f"c{uuid.uuid4().hex[:10]}"}):
        old, hot, new = (Lock(name, timeout=300) for name in ("old:1", "hot:2", "new:3"))
        assert old.acquire() and hot.acquire() and new.acquire()
        try:
            with in_line(hot, 2) as got:
                browser.get(f"{live_server.url}/admin/login/?next=/admin/tasklock/heldlock/")
                browser.find_element(By.NAME, "username").send_keys("watcher")
                browser.find_element(By.NAME, "password").send_keys("s3cret-pass")
                leave_page(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
                assert browser.title.startswith("Select held lock"), browser.title
                waiting = dict(zip(column(browser, "name"), column(browser, "waiting"), strict=True))
                assert waiting == {"old:1": "0", "hot:2": "2", "new:3": "0"}
                assert all(text.endswith(" s") for text in column(browser, "held_for"))
                browser.save_screenshot(str(tmp_path / "1-waiters.png"))

                header = browser.find_element(By.CSS_SELECTOR, "th.column-held_for a")
                leave_page(browser, header)  # ascending: the youngest first
                assert column(browser, "name") == ["new:3", "hot:2", "old:1"]
                header = browser.find_element(By.CSS_SELECTOR, "th.column-held_for div.text a")
                leave_page(browser, header)  # toggled: the oldest first
                assert column(browser, "name") == ["old:1", "hot:2", "new:3"]
                browser.save_screenshot(str(tmp_path / "2-oldest-first.png"))
                print(f"screenshots in {tmp_path}")
            assert got == [True, True]
        finally:
            old.release()
            new.release()

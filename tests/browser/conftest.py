"""The `browser` fixture: skip when headless Chromium is not installed, unless CI is set (to
anything but 0 or false), where a missing browser fails, so a CI machine without it cannot
pass by skipping every page check."""

from __future__ import annotations

import os

import pytest

from tests.browser.page_check import BrowserMissing, browser_binaries


@pytest.fixture(scope="session")
def browser() -> tuple[str, str]:
    try:
        return browser_binaries()
    except BrowserMissing as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{exc}; CI is set, so the page checks fail rather than skip", pytrace=False)
        pytest.skip(f"no headless browser: {exc}")

"""A real browser for the report-page tests: headless Chromium from the system's package manager
(``apt-get install chromium chromium-driver``) driven by Playwright, never a downloaded browser."""

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"]


def chromium_or_skip() -> Path:
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        pytest.skip("no /usr/bin/chromium: install the system browser (sudo apt-get install chromium "
                    "chromium-driver) to test report.html in a real browser")
    pytest.importorskip("playwright.sync_api", reason="playwright (a [dev] dependency) is not installed")
    return CHROMIUM if CHROMIUM.is_file() else Path(shutil.which("chromium"))


class Visit:
    """One page opened from disk, with what it did: console errors, page errors and every request."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors, self.requests = [], []
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(Path(path).resolve().as_uri(), wait_until="load")

    def images(self) -> list[int]:
        """Each image's natural width once loaded (0: not decoded)."""
        return self.page.eval_on_selector_all(
            "img", "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth, () => 0)))")

    def column(self, table: str, index: int, attr: bool = True) -> list:
        """The ``data-value`` (or text) of column ``index`` of every body row of table ``#table``."""
        read = "c.getAttribute('data-value')" if attr else "c.textContent.trim()"
        script = f"rows => rows.map(r => {{ const c = r.cells[{index}]; return {read}; }})"
        return self.page.eval_on_selector_all(f"#{table} tbody tr", script)

    def foreign_requests(self, page: Path) -> list[str]:
        return [url for url in self.requests if url != Path(page).resolve().as_uri() and not url.startswith("data:")]


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    path = chromium_or_skip()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(path), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()

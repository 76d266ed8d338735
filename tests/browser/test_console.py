"""The console in a real browser: Debian's headless Chromium driven by Selenium.

A real bridge runs on the three vendors' simulators with its admin token set; a real
webhook receiver first refuses everything with a hostile HTML body (so events are
dead-lettered and the excerpt is attacker-controlled), then accepts. Through the page
only: log in with the token, watch a source go down and come back, open a dead
letter's detail, retry it, and see the receiver get that event. A screenshot goes to
build/console.png for review.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from bridge import admin, logs
from bridge.asgi import serve_asgi
from bridge.config import load
from bridge.service import Bridge
from tests.integration.operators import free_port, simulator_for, start_simulators, three_vendor_config
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.needs_chromium]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-admin-token-0123456789"
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>\u202e'
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1500,1300",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium/chromedriver missing: scripts/setup test installs chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(fn: Callable[[], Any]) -> Any:
    """Selenium blocks: run it in a thread while the bridge keeps running on the trio loop."""
    return await trio.to_thread.run_sync(fn)


async def until(driver: Any, predicate: Callable[[Any], Any], timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return await in_browser(lambda: WebDriverWait(driver, timeout, poll_frequency=0.1).until(predicate))


def cell(driver: Any, table: str, name: str, css: str) -> str:
    """A cell's text, read in one script (the page replaces its rows on every poll)."""
    found = driver.execute_script(
        "const c = document.querySelector(arguments[0]); return c ? c.textContent : '';",
        f'#{table} tr[data-name="{name}"] {css}',
    )
    return str(found)


def click(driver: Any, css: str) -> None:
    """Click what ``css`` names; the page may swap the row between finding and clicking."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{css} kept going stale")


def texts(driver: Any, css: str) -> list[str]:
    found = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);", css
    )
    return [str(t) for t in found]


async def test_console_shows_live_states_and_retries_a_dead_letter(
    tmp_path: Path, nursery: trio.Nursery, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    refusing = True

    async def behaviour(receiver: Receiver, headers: dict[str, str], body: bytes) -> Any:
        if refusing:
            return 400, {"content-type": "text/html"}, HOSTILE.encode()
        return 204

    receiver = Receiver(behaviour)
    hook = await nursery.start(serve_asgi, receiver.app)
    admin_port = free_port()
    path = three_vendor_config(
        tmp_path, hooks={"crm": hook}, admin_port=admin_port, admin_extra=f'token = "{TOKEN}"'
    )
    config = load(path)
    simulators = await start_simulators(nursery, config)
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=1.0)
    admin.attach(bridge)
    await nursery.start(bridge.run)
    base = f"http://127.0.0.1:{admin_port}"
    auth = {"authorization": f"Bearer {TOKEN}"}
    try:
        # Dead letters appear (400 is not retried), then the receiver is fixed.
        async with httpx.AsyncClient(base_url=base, headers=auth) as api:

            async def dead() -> list[dict[str, Any]]:
                rows: list[dict[str, Any]] = (await api.get("/api/dlq")).json()["dead_letters"]
                return rows

            with trio.fail_after(60):
                while len(await dead()) < 3:
                    await trio.sleep(0.2)
        refusing = False

        await in_browser(lambda: browser.get(base + "/"))
        # Without the token the page can only ask for it.
        await until(browser, lambda d: d.find_element(By.ID, "login").is_displayed())

        def log_in() -> None:
            browser.find_element(By.ID, "token").send_keys(TOKEN)
            browser.find_element(By.CSS_SELECTOR, "#login button").click()

        await in_browser(log_in)
        await until(browser, lambda d: "actions enabled" in d.find_element(By.ID, "mode").text)
        await until(browser, lambda d: not d.find_element(By.ID, "login").is_displayed())
        for name in ("uptivity", "anywherenow", "encore"):
            await until(
                browser, lambda d, n=name: cell(d, "sources", n, ".state") in ("connected", "polling")
            )

        # A source goes down and comes back: the page follows without a reload.
        page_id = await in_browser(lambda: browser.execute_script("return window.performance.timeOrigin"))
        simulators["uptivity"].cancel()
        await until(browser, lambda d: cell(d, "sources", "uptivity", ".state") in ("disconnected", "error"))
        uptivity = next(c for c in config.sources if c.name == "uptivity")
        await nursery.start(simulator_for(uptivity).serve)
        await until(browser, lambda d: cell(d, "sources", "uptivity", ".state") == "connected")
        await until(browser, lambda d: cell(d, "sources", "uptivity", ".reconnects") == "1")
        assert (
            await in_browser(lambda: browser.execute_script("return window.performance.timeOrigin"))
            == page_id
        )

        # The dead letters, with the receiver's hostile answer shown as text, never run.
        await until(browser, lambda d: len(texts(d, "#dlq tbody tr")) >= 3)
        seq = int(
            await in_browser(
                lambda: browser.execute_script("return document.querySelector('#dlq tbody tr').dataset.seq")
            )
        )
        row = f'#dlq tr[data-seq="{seq}"]'
        excerpt = await in_browser(lambda: texts(browser, f"{row} .excerpt")[0])
        assert "HTTP 400" in excerpt and "<img" in excerpt and "<script>" in excerpt
        assert await in_browser(lambda: browser.execute_script("return window.__pwned === undefined"))
        assert not await in_browser(lambda: browser.find_elements(By.CSS_SELECTOR, "#dlq img, #dlq script"))

        # Per-event detail: the event itself and each sink's delivery state.
        await in_browser(lambda: click(browser, f"{row} td"))
        await until(browser, lambda d: d.find_element(By.ID, "detail").is_displayed())
        detail = await in_browser(lambda: browser.find_element(By.ID, "detail").text)
        assert '"specversion": "1.0"' in detail and "dead" in detail
        event_id = next(
            row["id"] for row in bridge.outbox.sync.deliveries(sink="crm", state=2) if row["seq"] == seq
        )
        assert event_id in detail

        # Retry through the page (bearer token + CSRF): the receiver gets that very event.
        await in_browser(lambda: click(browser, f"{row} .retry"))
        await until(browser, lambda d: "retry crm: 1 event(s)" in d.find_element(By.ID, "action-result").text)
        await wait_for(lambda: event_id in receiver.delivered_ids(), timeout=30)
        await until(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f'#dlq tr[data-seq="{seq}"]'))

        # Filters on recent events.
        def filter_type() -> None:
            box = browser.find_element(By.ID, "filter-type")
            box.clear()
            box.send_keys("recording.paused")

        await in_browser(filter_type)

        def only_paused(d: Any) -> bool:
            types = texts(d, "#events tbody td.type")
            return bool(types) and set(types) == {"recording.paused"}

        await until(browser, only_paused)

        (ROOT / "build").mkdir(exist_ok=True)
        await in_browser(lambda: browser.save_screenshot(str(ROOT / "build" / "console.png")))
        assert (ROOT / "build" / "console.png").stat().st_size > 10_000
    finally:
        bridge.request_stop()

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.support import reliability
from tests.support.helpers import LogCapture, capture_logs


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        reliability.reset()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    """Write the reliability rows a test held, with its outcome, whether it passed or not."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        expected = item.get_closest_marker("reliability") is not None
        reliability.flush(item.nodeid, report.outcome, expected=expected and report.when == "call")


@pytest.fixture
def log_capture() -> LogCapture:
    return capture_logs()

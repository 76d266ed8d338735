from __future__ import annotations

import pytest

from tests import reliability
from tests.helpers import LogCapture, capture_logs


def pytest_sessionstart(session: pytest.Session) -> None:
    reliability.reset()


@pytest.fixture
def log_capture() -> LogCapture:
    return capture_logs()

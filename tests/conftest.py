from __future__ import annotations

import pytest

from tests.helpers import LogCapture, capture_logs


@pytest.fixture
def log_capture() -> LogCapture:
    return capture_logs()

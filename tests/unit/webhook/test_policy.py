"""Which answers are retried, which are dead, which disable the endpoint."""

from __future__ import annotations

import pytest

from bridge.sinks.webhook.policy import RetryPolicy, valid_status_pattern


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, "ok"), (204, "ok"), (408, "retry"), (425, "retry"), (429, "retry"), (500, "retry"),
     (503, "retry"), (599, "retry"), (400, "dead"), (401, "dead"), (404, "dead"), (409, "dead"),
     (307, "dead"), (301, "dead"), (410, "gone")],
)  # fmt: skip
def test_default_policy(status: int, kind: str) -> None:
    assert RetryPolicy().classify(status) == kind


def test_chosen_statuses_only() -> None:
    policy = RetryPolicy.of(["503", "42x"])
    assert policy.classify(503) == "retry"
    assert policy.classify(500) == "dead"
    assert policy.classify(429) == "retry" and policy.classify(404) == "dead"
    assert RetryPolicy.of(["404", "5xx"]).classify(404) == "retry"  # Splunk's transient 404s


def test_abort_message_header_stops_retries_of_that_event() -> None:
    assert RetryPolicy().classify(503, {"webhook-delivery": "abort-message"}) == "dead"
    assert RetryPolicy().classify(503, {"webhook-delivery": "other"}) == "retry"
    assert RetryPolicy().classify(204, {"webhook-delivery": "abort-message"}) == "ok"


def test_disable_header_disables_like_410() -> None:
    assert RetryPolicy().classify(500, {"webhook-delivery": "disable"}) == "gone"
    assert RetryPolicy().classify(200, {"webhook-delivery": "disable"}) == "ok"


def test_gone_wins_over_a_listed_status() -> None:
    assert RetryPolicy.of(["4xx"]).classify(410) == "gone"


@pytest.mark.parametrize("text", ["429", "5xx", "50x", "1xx"])
def test_valid_patterns(text: str) -> None:
    assert valid_status_pattern(text)


@pytest.mark.parametrize("text", ["5", "600", "x00", "5xxx", "abc", ""])
def test_invalid_patterns(text: str) -> None:
    assert not valid_status_pattern(text)


def test_max_age() -> None:
    assert not RetryPolicy(max_age=0).too_old(0.0, 1e9)
    policy = RetryPolicy(max_age=3600)
    assert not policy.too_old(1000.0, 1000.0 + 3600)
    assert policy.too_old(1000.0, 1000.0 + 3601)

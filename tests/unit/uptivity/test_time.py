"""Zone-less vendor times and daylight-saving edges, as the README documents them."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bridge.sources.uptivity.mapping import parse_vendor_time

CHICAGO = ZoneInfo("America/Chicago")


def utc(text: str, received: datetime | None = None) -> str:
    moment = parse_vendor_time(text, CHICAGO, received)
    assert moment is not None
    return moment.astimezone(UTC).isoformat()


def test_ordinary_times_are_read_in_the_zone() -> None:
    assert utc("1/31/2011 2:39:49 PM") == "2011-01-31T20:39:49+00:00"  # CST, -6
    assert utc("7/13/2012 12:30:43 PM") == "2012-07-13T17:30:43+00:00"  # CDT, -5


def test_the_repeated_hour_is_the_occurrence_nearest_to_receipt() -> None:
    # 2026-11-01: clocks go back at 2:00 CDT -> 1:00 CST; 1:30 happens twice.
    first, second = "2026-11-01T06:30:00+00:00", "2026-11-01T07:30:00+00:00"
    assert utc("11/1/2026 1:30:00 AM", datetime(2026, 11, 1, 6, 31, tzinfo=UTC)) == first
    assert utc("11/1/2026 1:30:00 AM", datetime(2026, 11, 1, 7, 31, tzinfo=UTC)) == second
    # Received far from either (an old time in a status answer): the first occurrence.
    assert utc("11/1/2026 1:30:00 AM", datetime(2027, 1, 1, tzinfo=UTC)) == first
    assert utc("11/1/2026 1:30:00 AM") == first


def test_a_time_in_the_spring_forward_gap_is_read_with_the_offset_before_the_change() -> None:
    # 2026-03-08: 2:00 CST -> 3:00 CDT; 2:30 does not exist, it is read as 2:30 CST.
    assert utc("3/8/2026 2:30:00 AM", datetime(2026, 3, 8, 8, 31, tzinfo=UTC)) == "2026-03-08T08:30:00+00:00"


def test_unreadable_or_empty_times_are_none() -> None:
    assert parse_vendor_time("", CHICAGO) is None
    assert parse_vendor_time("yesterday", CHICAGO) is None

"""Settings of ``[[sources.uptivity]]`` (every key is in config/bridge.example.toml)."""

from __future__ import annotations

from dataclasses import field
from zoneinfo import ZoneInfo

from bridge.settings import Validator, setting, settings
from bridge.sources.uptivity.stream import MAX_DOCUMENT_BYTES

UTC = ZoneInfo("UTC")


@settings
class UptivitySettings:
    name: str = setting(doc="unique name of this source (logs, metrics, CloudEvent source)")
    host: str = setting(doc="the Event Proxy host")
    port: int = setting(5620, min=1, max=65535, doc="the Event Proxy port (documented: 5620)")
    event_class: str = setting("ALL", doc="EVENTCLASS sent with the EVENTS request (ALL, CALL, RECORD)")
    event_value: str = setting("", doc="EVENTVALUE sent with the EVENTS request")
    timezone: ZoneInfo | None = setting(
        None, doc="zone of the recorder's zone-less times (default: [bridge] timezone, else UTC)"
    )
    api_host: str | None = setting(None, doc="API server for status requests (default: host)")
    api_port: int | None = setting(None, min=1, max=65535, doc="API server port (default: port)")
    reconcile: str = setting(
        "auto",
        choices=("auto", "devicelist", "per_device", "off"),
        doc="how state is recovered after each (re)connect: auto = DEVICELIST, then "
        "DEVICERECORDINGSTATUS for recording devices (pauses); per device if the list is too large",
    )
    max_answer_bytes: int = setting(
        4 * 1024 * 1024,
        min=1024,
        doc="largest status answer read; a larger DEVICELIST falls back to per device",
    )
    max_tracked_devices: int = setting(
        100_000, min=1, doc="most devices whose recording state is kept for reconciliation (oldest dropped)"
    )
    reconcile_retry: float = setting(30.0, min=0.1, doc="seconds before a failed reconciliation is retried")
    probe_interval: float = setting(
        60.0,
        min=0.0,
        doc="after this many quiet seconds send the documented TEST on the API connection (0: off)",
    )
    probe_failures: int = setting(
        2, min=1, max=100, doc="unanswered TESTs in a row that mean the peer is dead"
    )
    idle_timeout: float = setting(
        0.0, min=0.0, doc="opt-in: rebuild the subscription after this many silent seconds (0: never)"
    )
    timeout: float = setting(
        15.0,
        min=0.1,
        aliases=("result_timeout", "connect_timeout"),
        doc="deadline of one request: connect plus its RESULT (EVENTS, TEST, status requests), seconds",
    )
    reconnect_min: float = setting(0.5, min=0.01, aliases=("backoff_base",), doc="first reconnect delay (s)")
    reconnect_max: float = setting(
        30.0, min=0.01, aliases=("backoff_cap",), doc="longest reconnect delay (s)"
    )
    refused_retry: float = setting(
        300.0, min=0.1, doc="seconds between tries after a permanent refusal (the source is marked failed)"
    )
    keepalive_idle: int = setting(
        30, min=1, max=32767, doc="TCP keepalive: idle seconds before the first probe"
    )
    keepalive_interval: int = setting(10, min=1, max=32767, doc="TCP keepalive: seconds between probes")
    keepalive_count: int = setting(
        3, min=1, max=127, doc="TCP keepalive: unanswered probes before the peer is dead"
    )
    max_document_bytes: int = setting(
        MAX_DOCUMENT_BYTES, min=1024, doc="larger documents are quarantined and the stream resyncs"
    )
    # Resolved by validate(): the zone times are read in, and where it came from.
    zone: ZoneInfo = field(default=UTC, init=False, compare=False)
    zone_origin: str = field(default="default (UTC)", init=False, compare=False)

    def __post_init__(self) -> None:
        if self.timezone is not None:
            object.__setattr__(self, "zone", self.timezone)
            object.__setattr__(self, "zone_origin", "source timezone")

    def validate(self, v: Validator) -> None:
        if self.reconnect_min > self.reconnect_max:
            raise v.error("reconnect_min", f"must not exceed reconnect_max ({self.reconnect_max})")
        if self.timezone is not None:
            return
        if v.table.ctx.timezone_set:
            object.__setattr__(self, "zone", v.table.ctx.timezone)
            object.__setattr__(self, "zone_origin", "[bridge] timezone")
            return
        v.warn(
            "timezone",
            "no time zone set here or in [bridge]: the recorder's zone-less times (STARTTIME, "
            'STOPTIME) are read as UTC; set timezone = "America/Chicago" (the recorder\'s zone)',
        )

"""The simulator's device table: what the status requests answer from.

Events the simulator produces move devices through their states (so the stream and the
status answers agree); :meth:`DeviceTable.set_state` changes a device *silently*, as a
recording that starts or stops while no subscriber is connected does on a real proxy.
Every change is journaled with a sequence number and a monotonic timestamp.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

STATES = ("idle", "recording", "paused")


def vendor_time(moment: datetime) -> str:
    """The docs' time layout: 1/31/2011 2:39:49 PM (no zone)."""
    hour = moment.hour % 12 or 12
    return f"{moment.month}/{moment.day}/{moment.year} {hour}:{moment:%M:%S} {moment:%p}"


@dataclass
class Device:
    device_id: str
    alias: str = ""
    sys_user: str = ""
    crm_user: str = ""
    group: str = ""
    gate: str = ""
    ani: str = ""
    dnis: str = ""
    direction: str = "I"
    core: str = "1"
    state: str = "idle"
    filename: str = ""
    call_instance: str = ""
    start_time: str = ""
    stop_time: str = ""
    user: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    seq: int
    monotonic: float
    device_id: str
    state: str
    silent: bool  # no event was sent for it


class DeviceTable:
    def __init__(self, count: int = 1, *, first: int = 1111, zone: str = "UTC", group: str = "") -> None:
        self.zone = ZoneInfo(zone)
        self.devices: dict[str, Device] = {}
        self.journal: list[Change] = []
        for i in range(max(1, count)):
            device_id = str(first + i)
            self.devices[device_id] = Device(device_id, alias=f"DESK{i + 1}", group=group)

    def now(self) -> str:
        return vendor_time(datetime.now(self.zone))

    def get(self, device_id: str) -> Device:
        if device_id not in self.devices:
            self.devices[device_id] = Device(device_id)
        return self.devices[device_id]

    def find(self, key: str, value: str) -> list[Device]:
        attr = {
            "DEVICEID": "device_id",
            "DEVICEALIAS": "alias",
            "SYS_USER": "sys_user",
            "CRM_USER": "crm_user",
        }
        name = attr.get(key)
        if not name or not value:
            return []
        return [d for d in self.devices.values() if getattr(d, name) == value]

    def set_state(
        self, device_id: str, state: str, *, silent: bool = True, filename: str | None = None, call: str = ""
    ) -> Device:
        """Move a device to ``state``; ``silent`` (the default) means no event is sent."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        device = self.get(device_id)
        if device.state == "idle" and state != "idle":
            device.start_time, device.stop_time = self.now(), ""
            device.call_instance = call or str(len(self.journal) + 1)
            device.filename = (
                filename or f"C:\\Recordings\\sim\\{device_id}\\{device_id}-{device.call_instance}.au"
            )
        elif state == "idle" and device.state != "idle":
            device.stop_time = self.now()
        if filename:
            device.filename = filename
        device.state = state
        self.journal.append(Change(len(self.journal) + 1, time.monotonic(), device_id, state, silent))
        return device

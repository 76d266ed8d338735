"""Ask the API server for device states, per the ``reconcile`` mode (the I/O half of
reconciliation; :mod:`.reconcile` is the pure half)."""

from __future__ import annotations

from functools import partial

from bridge.sources.uptivity.api import (
    AnswerTooLarge,
    ApiSession,
    Refused,
    device_list_request,
    device_request,
)
from bridge.sources.uptivity.reconcile import DeviceStatus, devices_from_answer

NOT_RECORDING = frozenset({7, 8, 12})  # DEVICE_NOT_IN_CALL, DEVICE_INVALID, DEVICE_NOT_RECORDING


async def ask_states(api: ApiSession, mode: str, known: set[str]) -> tuple[str, list[DeviceStatus], bool]:
    """(request type, devices, whether the list is complete).

    ``auto``: DEVICELIST, then DEVICERECORDINGSTATUS for the known devices it says are
    recording (DEVICELIST carries no STATUS, so a pause is only visible that way); a
    DEVICELIST larger than ``max_answer_bytes`` falls back to one DEVICERECORDINGSTATUS
    per known device. ``devicelist`` and ``per_device`` use only the one request.
    """
    if mode in ("auto", "devicelist"):
        try:
            answer = await api.checked("DEVICELIST", device_list_request)
        except AnswerTooLarge:
            if mode == "devicelist":
                raise
        else:
            statuses = devices_from_answer(answer.element)
            if mode == "auto":
                for i, status in enumerate(statuses):
                    if status.state == "recording" and status.device_id in known:
                        detail = await device_state(api, status.device_id)
                        if detail is not None:
                            statuses[i] = detail
            return "DEVICELIST", statuses, True
    found: list[DeviceStatus] = []
    for device_id in sorted(known):
        one = await device_state(api, device_id)
        if one is not None:
            found.append(one)
    return "DEVICERECORDINGSTATUS", found, False


async def device_state(api: ApiSession, device_id: str) -> DeviceStatus | None:
    """One device by DEVICERECORDINGSTATUS; "not in call / not recording / no such device"
    answers mean it is idle."""
    build = partial(device_request, "DEVICERECORDINGSTATUS", device_id=device_id)
    answer = await api.request("DEVICERECORDINGSTATUS", build)
    idle = DeviceStatus(device_id, "idle", {"DEVICEID": device_id}, {"DEVICEID": device_id})
    if answer.code in NOT_RECORDING:
        return idle
    if answer.outcome != "ok":
        raise Refused("DEVICERECORDINGSTATUS", answer)
    for status in devices_from_answer(answer.element):
        if status.device_id == device_id:
            return status
    return idle

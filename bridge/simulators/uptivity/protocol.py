"""The simulator's side of the API protocol, written from the vendor docs alone.

Requests are read with regular expressions (the simulator shares no parser with the
bridge); answers are rendered in the docs' layout. Values are written as the real
server writes them, *unescaped*: a group called "Sales & Marketing" goes on the wire
exactly like that, as in the docs' ADDGROUP example.
"""

from __future__ import annotations

import re

from bridge.simulators.uptivity.devices import Device

RESULT_NAMES = {
    4: "API_ERROR_UNKNOWN",
    8: "API_DEVICE_INVALID",
    10: "API_UNKNOWN_MESSAGE_TYPE",
    16: "API_INVALID_MESSAGE_FORMAT",
    20: "API_OK",
    23: "API_DATABASE_QUERY_ERROR",
    30: "API_EVENT_TYPE_INVALID",
    34: "API_ERROR_RECORDER_NOT_RUNNING",
    39: "API_UNLICENSED",
    48: "API_TOO_MANY_CLIENTS",
}


def field(request: bytes, tag: str) -> str | None:
    match = re.search(rb"<" + tag.encode() + rb">\s*([^<]*?)\s*</" + tag.encode() + rb">", request)
    return match.group(1).decode("utf-8", "replace") if match else None


def header(request_type: str, request_id: str, code: int = 20, message: str | None = None) -> list[str]:
    """The RESULT header lines; an error is RESULTTYPE ERROR with the code (docs, "Results")."""
    name = RESULT_NAMES.get(code, "API_ERROR_UNKNOWN")
    result_type = "API_OK" if code == 20 else "ERROR"
    if message is None:
        message = "API_OK" if code == 20 else f" {name}"
    return [
        "<RESULT>",
        f"  <REQUESTTYPE>{request_type}</REQUESTTYPE>",
        f"  <REQUESTID>{request_id}</REQUESTID>",
        f"  <RESULTTYPE>{result_type}</RESULTTYPE>",
        f"  <RESULTCODE>{code}</RESULTCODE>",
        f"  <RESULTMSG>{message}</RESULTMSG>",
    ]


def finish(lines: list[str]) -> bytes:
    return ("\n".join([*lines, "</RESULT>"]) + "\r\n").encode()


def error(request_type: str, request_id: str, code: int) -> bytes:
    return finish(header(request_type, request_id, code))


def test_result(request_id: str) -> bytes:
    """The docs' TEST answer (REQUESTID before REQUESTTYPE, as printed)."""
    lines = [
        "<RESULT>",
        f"  <REQUESTID>{request_id}</REQUESTID>",
        "  <REQUESTTYPE>TEST</REQUESTTYPE>",
        "  <RESULTTYPE>API_OK</RESULTTYPE>",
        "  <RESULTCODE>20</RESULTCODE>",
        "  <RESULTMSG>API_OK</RESULTMSG>",
    ]
    return finish(lines)


def _users(device: Device, indent: str) -> list[str]:
    return [f"{indent}<USER{i}>{device.user.get(i, '')}</USER{i}>" for i in range(1, 16)]


def _is_recording(device: Device) -> str:
    return "N" if device.state == "idle" else "Y"


def device_block(device: Device, indent: str = "    ") -> list[str]:
    """A DEVICE as DEVICELIST and DEVICESTATUS return it."""
    i, j = indent, indent + "  "
    k = j + "  "
    return [
        f"{i}<DEVICE>",
        f"{j}<DEVICEID>{device.device_id}</DEVICEID>",
        f"{j}<DEVICEALIAS>{device.alias}</DEVICEALIAS>",
        f"{j}<SYS_USER>{device.sys_user}</SYS_USER>",
        f"{j}<CRM_USER>{device.crm_user}</CRM_USER>",
        f"{j}<GROUP>{device.group}</GROUP>",
        f"{j}<GATE>{device.gate}</GATE>",
        f"{j}<ANI>{device.ani}</ANI>",
        f"{j}<DNIS>{device.dnis}</DNIS>",
        *_users(device, j),
        f"{j}<CALLDIRECTION>{device.direction}</CALLDIRECTION>",
        f"{j}<ISTRUNK></ISTRUNK>",
        f"{j}<STATION></STATION>",
        f"{j}<STARTTIME>{device.start_time}</STARTTIME>",
        f"{j}<STOPTIME>{device.stop_time}</STOPTIME>",
        f"{j}<COREIDENT>{device.core}</COREIDENT>",
        f"{j}<RECORDING>",
        f"{k}<ISRECORDING>{_is_recording(device)}</ISRECORDING>",
        f"{k}<ISRECORDINGVIDEO>N</ISRECORDINGVIDEO>",
        f"{k}<FILENAME>{device.filename}</FILENAME>",
        f"{k}<CALLID></CALLID>",
        f"{k}<SESSIONID></SESSIONID>",
        f"{k}<CALLINSTANCE>{device.call_instance}</CALLINSTANCE>",
        f"{j}</RECORDING>",
        f"{i}</DEVICE>",
    ]


def device_list(request_type: str, request_id: str, devices: list[Device], message: str = "API_OK") -> bytes:
    lines = header(request_type, request_id, 20, message)
    lines += ["", "  <DEVICES>", f"    <COUNT>{len(devices)}</COUNT>"]
    for device in devices:
        lines += device_block(device)
    lines.append("  </DEVICES>")
    return finish(lines)


def recording_status(request_id: str, devices: list[Device]) -> bytes:
    """DEVICERECORDINGSTATUS: each device with its active instances and their STATUS."""
    lines = header(
        "DEVICERECORDINGSTATUS",
        request_id,
        20,
        "Following active call instances found for specified deviceID,\ndevicealias, crm_user or sys_user",
    )
    for d in devices:
        lines += [
            "<DEVICE>",
            f"  <DEVICEID>{d.device_id}</DEVICEID>",
            f"  <DEVICEALIAS>{d.alias}</DEVICEALIAS>",
            f"  <SYS_USER>{d.sys_user}</SYS_USER>",
            f"  <CRM_USER>{d.crm_user}</CRM_USER>",
            f"  <COREIDENT>{d.core}</COREIDENT>",
        ]
        if d.state != "idle":
            lines += [
                "  <RECORDING>",
                f"    <GROUP>{d.group}</GROUP>",
                f"    <GATE>{d.gate}</GATE>",
                f"    <ANI>{d.ani}</ANI>",
                f"    <DNIS>{d.dnis}</DNIS>",
                *_users(d, "    "),
                f"    <CALLDIRECTION>{d.direction}</CALLDIRECTION>",
                "    <ISTRUNK></ISTRUNK>",
                "    <STATION></STATION>",
                f"    <STARTTIME>{d.start_time}</STARTTIME>",
                f"    <STOPTIME>{d.stop_time}</STOPTIME>",
                "    <ISRECORDING>Y</ISRECORDING>",
                "    <ISRECORDINGVIDEO>N</ISRECORDINGVIDEO>",
                f"    <FILENAME>{d.filename}</FILENAME>",
                "    <CALLID></CALLID>",
                "    <SESSIONID></SESSIONID>",
                f"    <CALLINSTANCE>{d.call_instance}</CALLINSTANCE>",
                f"    <STATUS>{'recordpaused' if d.state == 'paused' else 'recording'}</STATUS>",
                "  </RECORDING>",
            ]
        lines.append("</DEVICE>")
    return finish(lines)

"""The simulator's status answers have the docs' shape (element names and order), so the
bridge's reconciliation is tested against what a real API server sends. Pure: the
simulator's answer() is called directly, and read with lxml, not with bridge code."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from bridge.simulators.uptivity import UptivitySimulator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "uptivity"
RECOVER = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)


def tags(element: etree._Element) -> list[str]:
    return [child.tag for child in element]


def doc(name: str) -> etree._Element:
    return etree.fromstring((FIXTURES / name).read_bytes(), RECOVER)


def request(body: str) -> bytes:
    return f"<REQUEST>\n{body}\n</REQUEST>\r\n".encode()


def test_test_answer_is_the_documented_one() -> None:
    sim = UptivitySimulator()
    answer = sim.answer(request("  <TYPE>TEST</TYPE>\n  <REQUESTID>1</REQUESTID>"))
    assert answer == (FIXTURES / "5.3-result-test-L131.xml").read_bytes() + b"\r\n"


def test_devicelist_answer_has_the_documented_device_layout() -> None:
    sim = UptivitySimulator(devices=2)
    sim.set_device_state("1111", "recording")
    root = etree.fromstring(sim.answer(request("  <TYPE>DEVICELIST</TYPE>\n  <REQUESTID>7</REQUESTID>")))
    documented = doc("16.2-result-devicelist-L596.xml")
    assert tags(root) == tags(documented)
    devices, documented_devices = root.find("DEVICES"), documented.find("DEVICES")
    assert devices.findtext("COUNT") == "2"
    device, documented_device = devices.findall("DEVICE")[0], documented_devices.find("DEVICE")
    assert tags(device) == tags(documented_device)
    assert tags(device.find("RECORDING")) == tags(documented_device.find("RECORDING"))
    assert root.findtext("REQUESTID") == "7" and root.findtext("RESULTCODE") == "20"
    assert device.findtext("RECORDING/ISRECORDING") == "Y"
    assert devices.findall("DEVICE")[1].findtext("RECORDING/ISRECORDING") == "N"


def test_devicerecordingstatus_answer_has_the_documented_recording_layout() -> None:
    sim = UptivitySimulator()
    sim.set_device_state("1111", "paused")
    body = "  <TYPE>DEVICERECORDINGSTATUS</TYPE>\n  <DEVICEID>1111</DEVICEID>\n  <REQUESTID>9</REQUESTID>"
    root = etree.fromstring(sim.answer(request(body)))
    documented = doc("16.2-result-devicerecordingstatus-L799.xml")
    device, documented_device = root.find("DEVICE"), documented.find("DEVICE")
    assert tags(device) == tags(documented_device)
    assert tags(device.find("RECORDING")) == tags(documented_device.find("RECORDING"))
    assert device.findtext("RECORDING/STATUS") == "recordpaused"
    assert root.findtext("REQUESTID") == "9"


def test_unknown_device_and_unknown_type_are_documented_errors() -> None:
    sim = UptivitySimulator()
    missing = etree.fromstring(
        sim.answer(
            request("  <TYPE>DEVICESTATUS</TYPE>\n  <DEVICEID>42</DEVICEID>\n  <REQUESTID>3</REQUESTID>")
        )
    )
    assert (missing.findtext("RESULTTYPE"), missing.findtext("RESULTCODE")) == ("ERROR", "8")
    unknown = etree.fromstring(sim.answer(request("  <TYPE>NOSUCH</TYPE>\n  <REQUESTID>4</REQUESTID>")))
    assert unknown.findtext("RESULTCODE") == "10" and unknown.findtext("REQUESTID") == "4"


def test_silent_changes_are_journaled_as_silent_and_events_move_the_table() -> None:
    sim = UptivitySimulator(numbered=True)
    sim.set_device_state("1111", "recording")
    sim._track(5)  # RECORDINGSTOPPED of call 1: an event was sent for it
    assert sim.table.devices["1111"].state == "idle"
    assert [(c.state, c.silent) for c in sim.table.journal] == [("recording", True), ("idle", False)]


def test_group_is_written_unescaped_like_the_real_proxy() -> None:
    sim = UptivitySimulator(numbered=True, group="Sales & Marketing")
    assert b"<GROUP>Sales & Marketing</GROUP>" in sim.document(1)
    sim.set_device_state("1111", "recording")
    answer = sim.answer(request("  <TYPE>DEVICELIST</TYPE>\n  <REQUESTID>1</REQUESTID>"))
    assert b"<GROUP>Sales & Marketing</GROUP>" in answer


def test_the_simulator_shares_no_code_with_the_source() -> None:
    """An independent counterpart: nothing under bridge/simulators/uptivity imports
    bridge.sources (no shared parser, namespace or constant)."""
    import ast

    package = Path(__file__).resolve().parents[3] / "bridge" / "simulators" / "uptivity"
    imported = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    assert imported and not [m for m in imported if m.startswith("bridge.sources")]

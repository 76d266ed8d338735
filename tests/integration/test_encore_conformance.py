"""Encore wire conformance, checked against fixtures written from the docs, without the
simulator: a plain loopback HTTP server records what the bridge sends and answers with
fixture bytes (tests/fixtures/encore/README.md says where each comes from)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from bridge.components import SourceContext
from bridge.quarantine import Quarantine
from bridge.sources.encore import EncoreSource
from bridge.sources.encore.resolver import Target
from bridge.sources.encore.soap import SoapClient, SoapFault, parse_response
from bridge.sources.encore.source import Seen
from bridge.sources.encore.urls import Transient
from tests.integration.test_encore_source import RecordingLog, settings_for, wait_for
from tests.support.helpers import MemoryEmitter

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "encore"
EXAMPLE_URL = "https://encore.dvsanalytics.com/encore/urlplayer.aspx?fldCallIndex=429504.2640&siteid=1"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def appendix_d() -> list[tuple[int, str]]:
    rows = []
    for line in (FIXTURES / "appendix-d.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            code, message = line.split("\t")
            rows.append((int(code), message))
    return rows


class FixtureServer:
    """HTTP/1.1 on loopback: records each request, answers from ``answers[operation]``
    (a list is consumed in order, its last item repeats)."""

    def __init__(self, answers: dict[str, list[tuple[int, bytes]]]) -> None:
        self.answers = answers
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                self.requests.append((headers, body))
                op = headers.get("soapaction", "").strip('"').rsplit("/", 1)[-1]
                queue = self.answers.get(op) or [(500, fixture("answers/fault-action-not-supported.xml"))]
                status, answer = queue.pop(0) if len(queue) > 1 else queue[0]
                await trio.sleep(0.001)
                self.in_flight -= 1
                reason = b"OK" if status == 200 else b"Internal Server Error"
                await stream.send_all(
                    b"HTTP/1.1 %d %s\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: %d\r\n\r\n"
                    % (status, reason, len(answer))
                    + answer
                )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle, listeners)


# -- what the bridge sends ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "name"),
    [
        ("PortStatusEX", [("Unit", "1"), ("Port", "7")], "PortStatusEX"),
        ("PortStatus", [("Unit", "1"), ("Port", "7")], "PortStatus"),
        ("GetURL", [("Unit", "1"), ("Port", "7")], "GetURL"),
        ("InitStation", [("Extension", "1234")], "InitStation"),
    ],
)
async def test_requests_are_byte_for_byte_what_the_docs_define(
    nursery: trio.Nursery, operation: str, params: list[tuple[str, str]], name: str
) -> None:
    server = FixtureServer({})
    port = await nursery.start(server.serve)
    client = SoapClient(f"http://127.0.0.1:{port}/WebAPI/ECAPI.svc")
    try:
        with pytest.raises(SoapFault):
            await client.call(operation, params)
    finally:
        await client.aclose()
    ((headers, body),) = server.requests
    assert body == fixture(f"requests/{name}.xml")
    assert headers["content-type"] == "text/xml; charset=utf-8"
    assert headers["soapaction"] == f'"http://tempuri.org/IECAPI/{operation}"'


@pytest.mark.parametrize("version", ["7.1", "7.0"])
async def test_the_source_resolves_users_with_the_parameter_names_of_its_version(
    tmp_path: Path, nursery: trio.Nursery, version: str
) -> None:
    server = FixtureServer(
        {
            "InitUser": [(200, fixture("answers/InitUser-655.xml"))],
            "InitStation": [(200, fixture("answers/InitStation-ok.xml"))],
            "PortStatusEX": [(200, fixture("answers/PortStatusEX-not-recording.xml"))],
            "PortStatus": [(200, fixture("answers/PortStatusEX-not-recording.xml"))],
        }
    )
    port = await nursery.start(server.serve)
    source = EncoreSource(settings_for(port, users=["smith"], extensions=["1234"], api_version=version))
    log = RecordingLog()
    await nursery.start(source.run, SourceContext(MemoryEmitter(), Quarantine(tmp_path / "q"), {}, log))
    await wait_for(lambda: ("1", "3") in source.targets)
    bodies = [body for _, body in server.requests]
    assert fixture("requests/InitStation.xml") in bodies
    assert fixture(f"requests/InitUser-{version}.xml") in bodies
    (failed,) = log.named("encore_resolve_failed")
    assert (failed["user"], failed["code"]) == ("smith", 655)
    assert (
        failed["message"]
        == "Error: No recording port is defined for the specified machine name and user name"
    )


# -- what a server may answer ----------------------------------------------------------


def test_answers_are_read_by_local_name_whatever_the_prefixes_and_layout() -> None:
    record = parse_response("PortStatusEX", fixture("answers/PortStatusEX-record.xml"), 200)
    assert (record.code, record.message) == (100, "Command executed as expected")
    assert (record.get("portStatus"), record.get("stateDuration")) == ("RECORD", "300")
    paused = parse_response("PortStatusEX", fixture("answers/PortStatusEX-pause-extra-field.xml"), 200)
    assert (paused.get("portStatus"), paused.get("stateDuration"), paused.get("recorderName")) == (
        "PAUSE",
        "PT2M5S",
        "REC-01",
    )
    url = parse_response("GetURL", fixture("answers/GetURL-ok.xml"), 200)
    assert url.get("URL") == EXAMPLE_URL  # Appendix A's example, &amp; decoded
    missing = parse_response("GetURL", fixture("answers/GetURL-658.xml"), 200)
    assert (missing.code, missing.get("URL")) == (658, "")


def test_wcf_faults_are_told_apart() -> None:
    with pytest.raises(SoapFault) as unsupported:
        parse_response("PortStatusEX", fixture("answers/fault-action-not-supported.xml"), 500)
    assert unsupported.value.action_not_supported and unsupported.value.status == 500
    with pytest.raises(SoapFault) as internal:
        parse_response("PortStatusEX", fixture("answers/fault-internal.xml"), 500)
    assert not internal.value.action_not_supported
    assert internal.value.faultcode == "a:InternalServiceFault"


# Where each code leaves a status poll: the docs' meaning decides (unit/port do not exist,
# the recorder or the service itself failing, anything else is about another request).
STATUS_OUTCOME = {100: "state", 606: "misconfigured", 611: "misconfigured"} | {
    c: "backoff" for c in (621, 651, 653, 801)
}


@pytest.mark.parametrize(("code", "message"), appendix_d())
async def test_every_appendix_d_code(tmp_path: Path, code: int, message: str) -> None:
    raw = fixture("answers/answer-template.xml").replace(b"{code}", str(code).encode())
    raw = raw.replace(b"{message}", message.replace("&", "&amp;").encode())
    if code == 100:
        raw = raw.replace(b"</a:responseMessage>", b"</a:responseMessage><a:portStatus>RECORD</a:portStatus>")
    answer = parse_response("PortStatusEX", raw, 200)
    assert (answer.code, answer.message) == (code, message)
    emitter, log = MemoryEmitter(), RecordingLog()
    settings = settings_for(1, ports=[("1", "7")], recording_urls=False)
    source = EncoreSource(settings)
    ctx = SourceContext(emitter, Quarantine(tmp_path / "q"), {}, log)
    outcome = STATUS_OUTCOME.get(code, "logged")
    try:
        await source.handle_response(
            ctx, Target("1", "7"), "PortStatusEX", answer, Seen(time.time(), time.monotonic())
        )
    except Transient as exc:
        assert outcome == "backoff" and str(code) in str(exc)
        return
    if outcome == "state":
        assert emitter.types() == ["recording.started"]
        assert emitter.events[0].data["raw"]["responseMessage"] == message
    elif outcome == "misconfigured":
        assert log.named("encore_port_misconfigured")[0]["code"] == code and emitter.events == []
    else:
        assert outcome == "logged"
        assert log.named("encore_port_error") == [
            {"subject": "1/7", "code": code, "message": message, "operation": "PortStatusEX"}
        ]
        assert emitter.events == []


# -- fixtures end to end --------------------------------------------------------------------


async def test_fixture_answers_become_events_with_every_field_as_sent(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = FixtureServer(
        {
            "PortStatusEX": [
                (200, fixture("answers/PortStatusEX-record.xml")),  # the version probe
                (200, fixture("answers/PortStatusEX-record.xml")),
                (200, fixture("answers/PortStatusEX-pause-extra-field.xml")),
            ],
            "GetURL": [(200, fixture("answers/GetURL-ok.xml"))],
        }
    )
    port = await nursery.start(server.serve)
    emitter = MemoryEmitter()
    source = EncoreSource(settings_for(port, ports=[("1", "7")]))
    await nursery.start(source.run, SourceContext(emitter, Quarantine(tmp_path / "q"), {}, RecordingLog()))
    await wait_for(lambda: len(emitter.events) >= 2)
    started, paused = emitter.events
    assert (started.type, paused.type) == ("recording.started", "recording.paused")
    assert started.data["recording_url"] == paused.data["recording_url"] == EXAMPLE_URL
    assert started.data["stateDuration"] == 300 and paused.data["stateDuration"] == 125  # PT2M5S
    assert paused.data["raw"] == {
        "operation": "PortStatusEX",
        "portStatus": "PAUSE",
        "responseCode": "100",
        "responseMessage": "Command executed as expected",
        "stateDuration": "PT2M5S",
        "recorderName": "REC-01",
        # RECORD -> PAUSE asked GetURL which recording is paused: its answer as sent.
        "GetURL": {
            "URL": EXAMPLE_URL,
            "responseCode": "100",
            "responseMessage": "Command executed as expected",
        },
    }
    assert server.max_in_flight == 1


async def test_a_70_server_is_detected_from_its_fault_and_polled_with_portstatus(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    server = FixtureServer(
        {
            "PortStatusEX": [(500, fixture("answers/fault-action-not-supported.xml"))],
            "PortStatus": [(200, fixture("answers/PortStatus-record-7.0.xml"))],
            "GetURL": [(200, fixture("answers/GetURL-ok.xml"))],
        }
    )
    port = await nursery.start(server.serve)
    emitter = MemoryEmitter()
    source = EncoreSource(settings_for(port, ports=[("1", "7")]))
    await nursery.start(source.run, SourceContext(emitter, Quarantine(tmp_path / "q"), {}, RecordingLog()))
    await wait_for(lambda: emitter.events)
    (started,) = emitter.events
    assert source.legacy is True
    assert started.type == "recording.started" and started.data["state"] == "RECORD"  # 7.0 says "Recording"
    assert started.data["time_source"] == "received" and started.data["stateDuration"] is None
    assert fixture("requests/PortStatus.xml") in [body for _, body in server.requests]


async def test_geturl_608_means_the_port_moved_on_and_what_was_seen_is_still_announced(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """608 to GetURL: the port left RECORD/PAUSE between the two requests. PortStatus's
    RECORD was true when it was answered, so its step is announced, without a link."""
    server = FixtureServer(
        {
            "PortStatusEX": [
                (200, fixture("answers/PortStatusEX-not-recording.xml")),  # the version probe
                (200, fixture("answers/PortStatusEX-not-recording.xml")),
                (200, fixture("answers/PortStatusEX-record.xml")),
                (200, fixture("answers/PortStatusEX-not-recording.xml")),
            ],
            "GetURL": [(200, fixture("answers/GetURL-608.xml"))],
        }
    )
    port = await nursery.start(server.serve)
    emitter = MemoryEmitter()
    source = EncoreSource(settings_for(port, ports=[("1", "7")]))
    await nursery.start(source.run, SourceContext(emitter, Quarantine(tmp_path / "q"), {}, RecordingLog()))
    await wait_for(lambda: len(emitter.events) >= 2)
    started, stopped = emitter.events
    assert (started.type, stopped.type) == ("recording.started", "recording.stopped")
    assert started.data["recording_url"] is None and started.data["url_lookup"] == "failed"
    assert started.data["raw"]["GetURL"]["responseCode"] == "608"  # the answer as sent

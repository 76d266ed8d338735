"""The Encore SOAP client: envelopes, prefix-agnostic parsing, hardened XML, clear errors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from lxml import etree

from bridge.simulators.encore import EncoreSimulator
from bridge.sources.encore.soap import (
    SOAP11_NS,
    SoapClient,
    SoapError,
    SoapFault,
    SoapHttpError,
    SoapParseError,
    SoapTransportError,
    build_envelope,
    parse_response,
)


async def with_client(sim: EncoreSimulator, body: Any, path: str = "/WebAPI/ECAPI.svc", **kw: Any) -> Any:
    """Run ``body(client)`` against the simulator; a SoapError is re-raised as itself."""
    outcome: Any = None
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        client = SoapClient(f"http://127.0.0.1:{port}{path}", **kw)
        try:
            outcome = await body(client)
        except SoapError as exc:
            outcome = exc
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
    if isinstance(outcome, SoapError):
        raise outcome
    return outcome


def test_envelope_is_soap11_with_parameters_in_the_target_namespace() -> None:
    raw = build_envelope("PortStatusEX", [("Unit", "1"), ("Port", "7")], "urn:encore")
    root = etree.fromstring(raw)
    assert root.tag == f"{{{SOAP11_NS}}}Envelope"
    op = root[0][0]
    assert op.tag == "{urn:encore}PortStatusEX"
    assert [(c.tag, c.text) for c in op] == [("{urn:encore}Unit", "1"), ("{urn:encore}Port", "7")]


def test_values_are_escaped_not_injected() -> None:
    raw = build_envelope("InitUser", [("User", "a</User><x>&amp;"), ("Machine", "m")], "urn:e")
    op = etree.fromstring(raw)[0][0]
    assert op[0].text == "a</User><x>&amp;" and len(op) == 2


@pytest.mark.parametrize(
    "envelope",
    [
        # WCF data-contract style, default namespace for the wrapper.
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        b'<PortStatusEXResponse xmlns="http://tempuri.org/"><PortStatusEXResult xmlns:a="urn:dc">'
        b"<a:responseCode>100</a:responseCode><a:responseMessage>ok</a:responseMessage>"
        b"<a:portStatus>PAUSE</a:portStatus><a:stateDuration>12</a:stateDuration>"
        b"</PortStatusEXResult></PortStatusEXResponse></s:Body></s:Envelope>",
        # Other prefixes, out-parameters directly in the response element, a header.
        b'<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        b' xmlns:t="http://tempuri.org/"><soapenv:Header/><soapenv:Body><t:PortStatusEXResponse>'
        b"<t:responseCode>100</t:responseCode><t:responseMessage>ok</t:responseMessage>"
        b"<t:portStatus>PAUSE</t:portStatus><t:stateDuration>12</t:stateDuration>"
        b"</t:PortStatusEXResponse></soapenv:Body></soapenv:Envelope>",
    ],
)
def test_fields_are_matched_by_local_name_whatever_the_prefixes(envelope: bytes) -> None:
    resp = parse_response("PortStatusEX", envelope, 200)
    assert resp.code == 100
    assert resp.get("portstatus") == "PAUSE"  # case-insensitive lookup
    assert resp.get("stateDuration") == "12"


def test_soap_fault_is_reported_with_code_string_and_status() -> None:
    raw = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
        b"<faultcode>s:Client</faultcode><faultstring>Bad unit</faultstring></s:Fault></s:Body></s:Envelope>"
    )
    with pytest.raises(SoapFault) as info:
        parse_response("PortStatus", raw, 500)
    fault = info.value
    assert (fault.faultcode, fault.faultstring, fault.status) == ("s:Client", "Bad unit", 500)
    assert "Bad unit" in str(fault) and "HTTP 500" in str(fault)
    assert not fault.action_not_supported


def test_non_xml_answers_carry_status_and_a_bounded_excerpt() -> None:
    html = b"<html><body>" + b"Service Unavailable " * 500 + b"</body></html>"
    with pytest.raises(SoapHttpError) as info:
        parse_response("PortStatusEX", html, 503)
    assert info.value.status == 503
    assert info.value.excerpt.startswith("<html><body>Service Unavailable")
    assert len(info.value.excerpt) <= 301
    with pytest.raises(SoapParseError) as parsed:
        parse_response("PortStatusEX", b"OK", 200)
    assert "not XML" in str(parsed.value) and parsed.value.raw == b"OK"
    with pytest.raises(SoapParseError, match="not a SOAP envelope"):
        parse_response("PortStatusEX", b"<a><b/></a>", 200)


def test_redirects_are_not_followed_but_explained() -> None:
    with pytest.raises(SoapHttpError, match=r"set url to the final ECAPI\.svc address") as info:
        parse_response("PortStatus", b"<html><body>Object moved</body></html>", 302)
    assert info.value.status == 302


def test_dtds_and_entities_are_refused() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><R>'
        b"<responseCode>&lol2;</responseCode></R></s:Body></s:Envelope>"
    )
    with pytest.raises(SoapParseError, match="DOCTYPE"):
        parse_response("PortStatus", bomb, 200)
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><R>'
        b"<responseCode>&e;</responseCode></R></s:Body></s:Envelope>"
    )
    with pytest.raises(SoapParseError):
        parse_response("PortStatus", external, 200)


async def test_client_sends_the_soap_action_header_the_service_expects() -> None:
    sim = EncoreSimulator()

    async def body(client: SoapClient) -> Any:
        return await client.call("InitStation", [("Extension", "1234")])

    resp = await with_client(sim, body)
    assert (resp.code, resp.get("Unit"), resp.get("Port")) == (100, "1", "1")
    assert client_action(sim) == "InitStation"


def client_action(sim: EncoreSimulator) -> str:
    return sim.requests[-1][0]


async def test_namespace_and_soap_action_are_configurable() -> None:
    custom = {"namespace": "urn:dvs:ecapi", "soap_action": "{namespace}/ECAPI/{operation}"}
    sim = EncoreSimulator(**custom)

    async def body(client: SoapClient) -> Any:
        return await client.call("PortStatus", [("Unit", "1"), ("Port", "1")])

    resp = await with_client(sim, body, **custom)
    assert resp.get("portStatus") == "NOT RECORDING"

    async def wrong(client: SoapClient) -> Any:  # WCF defaults against a customized service
        return await client.call("PortStatus", [("Unit", "1"), ("Port", "1")])

    with pytest.raises(SoapFault) as info:
        await with_client(EncoreSimulator(**custom), wrong)
    assert info.value.action_not_supported and info.value.status == 500


async def test_http_errors_are_reported_with_status_and_excerpt() -> None:
    async def body(client: SoapClient) -> Any:
        return await client.call("PortStatus", [("Unit", "1"), ("Port", "1")])

    with pytest.raises(SoapHttpError) as info:
        await with_client(EncoreSimulator(), body, path="/WebAPI/wrong-path")
    assert info.value.status == 404 and "404 Not Found" in info.value.excerpt


async def test_oversized_answers_are_cut_off() -> None:
    async def body(client: SoapClient) -> Any:
        return await client.call("PortStatus", [("Unit", "1"), ("Port", "1")])

    with pytest.raises(SoapParseError, match="larger than 100 bytes"):
        await with_client(EncoreSimulator(), body, max_response_bytes=100)


async def test_connection_failures_are_transport_errors() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SoapClient(f"http://127.0.0.1:{port}/ECAPI.svc", timeout=2.0)
    try:
        with pytest.raises(SoapTransportError, match="PortStatus: ConnectError"):
            await client.call("PortStatus", [("Unit", "1"), ("Port", "1")])
    finally:
        await client.aclose()


async def test_client_limits_requests_in_flight() -> None:
    sim = EncoreSimulator(latency=0.05)

    async def body(client: SoapClient) -> Any:
        async with trio.open_nursery() as nursery:
            for port in range(1, 7):
                nursery.start_soon(client.call, "PortStatus", [("Unit", "1"), ("Port", str(port))])

    await with_client(sim, body, max_in_flight=2)
    assert sim.calls["PortStatus"] == 6
    assert sim.max_concurrency == 2

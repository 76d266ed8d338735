"""The simulator's side of the wire: SOAP 1.1 requests in, WCF-style answers out.

Written from the Encore Web API docs and the SOAP 1.1 note, independently of the
bridge's client (``bridge.sources.encore``): nothing is shared, so a misreading on one
side shows up as a failure on the other. Answers look like a WCF data contract:
``<OpResponse xmlns=ns><OpResult xmlns:a=datacontract><a:responseCode>…``.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

ENVELOPE_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE_NS = "http://tempuri.org/"  # WCF's default target namespace
ACTION_TEMPLATE = "{namespace}IECAPI/{operation}"  # WCF's default: <ns><contract>/<operation>
DATACONTRACT_NS = "http://schemas.datacontract.org/2004/07/ECAPI"
ADDRESSING_NONE = "http://schemas.microsoft.com/ws/2005/05/addressing/none"

# Appendix D (7.1) / Appendix C (7.0), plus 627 which Appendix A uses for ResumeRecording.
MESSAGES = {
    100: "Command executed as expected",
    606: "Error: Recording unit does not exist",
    608: "Warning: Port was not recording",
    609: "Warning: Port already recording",
    610: "Error: Issue creating transaction record",
    611: "Error: Port does not exist",
    616: "Error: Port not in record or pause mode",
    618: "Error: Start recording failed, all licenses in use",
    621: "Error: Recording Engine is not connected to the recording server",
    626: "Error: Recording Engine determined there are no ports available on a Recording Server "
    "that supports load balancing.",
    627: "Warning: Port not in pause mode",
    651: "Error: ECAPI Web Service is not connected to the recorder",
    652: "Error: Field name and field value must be provided",
    653: "Error: An unexpected error occurred while processing request",
    654: "Error: Both User name and machine name must be provided",
    655: "Error: No recording port is defined for the specified machine name and user name",
    656: "Error: More than one recording port is defined for the specified machine name and/or user name",
    657: "Error: EventType is not provided",
    658: "Error: URL player address is not defined in ECAPI Web service's Web.config",
    659: "Error: Extension must be provided",
    660: "Error: No recording port is defined for the specified station",
    661: "Error: More than one recording port is defined for the specified station",
    662: "Error: User name must be provided",
    663: "Error: Desktop recording is not possible",
    664: "Error: Desktop Pause recording failed",
    665: "Error: Desktop Resume recording failed",
    801: "System Error: Error writing to disk (disk is full, path does not exist, no write "
    "permissions, etc.)",
}


class BadRequest(Exception):
    """The request is not a SOAP 1.1 envelope with one operation in its Body."""


def _parser() -> etree.XMLParser:
    # Requests come from whoever connects: never load a DTD, resolve an entity or fetch.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _name(node: Any) -> str:
    tag = node.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def parse_request(raw: bytes) -> tuple[str, dict[str, str]]:
    """(operation, parameters by local name) of a SOAP 1.1 request."""
    try:
        root = etree.fromstring(raw, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"not XML: {exc}") from None
    if root is None or root.tag != f"{{{ENVELOPE_NS}}}Envelope":
        raise BadRequest("not a SOAP 1.1 Envelope")
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype:
        raise BadRequest("DOCTYPE is not allowed")
    body = root.find(f"{{{ENVELOPE_NS}}}Body")
    if body is None:
        raise BadRequest("no SOAP Body")
    ops = [child for child in body if _name(child)]
    if len(ops) != 1:
        raise BadRequest("the Body must hold exactly one operation")
    params = {_name(child): (child.text or "").strip() for child in ops[0] if _name(child)}
    return _name(ops[0]), params


def answer(op: str, code: int, extra: list[tuple[str, str]], namespace: str = SERVICE_NS) -> bytes:
    """``<opResponse><opResult>`` with responseCode, responseMessage and ``extra``, in
    the data-contract namespace with prefix ``a:`` as WCF writes them."""
    env = etree.Element(f"{{{ENVELOPE_NS}}}Envelope", nsmap={"s": ENVELOPE_NS})
    body = etree.SubElement(env, f"{{{ENVELOPE_NS}}}Body")
    default: Any = {None: namespace}
    resp = etree.SubElement(body, f"{{{namespace}}}{op}Response", nsmap=default)
    result = etree.SubElement(resp, f"{{{namespace}}}{op}Result", nsmap={"a": DATACONTRACT_NS})
    pairs = [("responseCode", str(code)), ("responseMessage", MESSAGES.get(code, "Error")), *extra]
    for name, value in pairs:
        etree.SubElement(result, f"{{{DATACONTRACT_NS}}}{name}").text = value
    data: bytes = etree.tostring(env, xml_declaration=True, encoding="utf-8")
    return data


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fault(code: str, text: str) -> bytes:
    """A WCF SOAP 1.1 fault, e.g. ``a:ActionNotSupported``."""
    return (
        f'<s:Envelope xmlns:s="{ENVELOPE_NS}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{ADDRESSING_NONE}">{escape(code)}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(text)}</faultstring></s:Fault></s:Body></s:Envelope>'
    ).encode()

"""The peer: the same pipeline (Uptivity TCP event stream -> one JSON POST per event)
as a Node-RED flow, written into a throwaway user directory.

The flow is what a Node-RED user would build from stock nodes: ``inject`` (once, the
EVENTS request) -> ``tcp request`` (stay connected, emit every chunk) -> ``function``
(split the stream into ``CALLCOPYEVENT`` documents) -> ``xml`` (to an object) ->
``function`` (map to a small JSON event) -> ``http request`` (POST, keep-alive agent).
It has no durable store and does not sign.
"""

from __future__ import annotations

import json
from pathlib import Path

from bridge.sources.uptivity import events_request

SPLIT = r"""
let buf = (context.get("buf") || "") + msg.payload.toString();
const end = "</CALLCOPYEVENT>";
const out = [];
let i;
while ((i = buf.indexOf(end)) >= 0) {
    const doc = buf.slice(0, i + end.length);
    buf = buf.slice(i + end.length);
    const s = doc.indexOf("<CALLCOPYEVENT");
    if (s >= 0) out.push({payload: doc.slice(s)});
}
context.set("buf", buf);
return [out];
"""

MAP = r"""
const e = msg.payload.CALLCOPYEVENT || {};
const d = (e.EVENTDATA || [{}])[0] || {};
const f = (k) => String(((d[k] || [""])[0]) || "").trim();
msg.payload = {
    type: String((e.EVENTTYPE || [""])[0]).trim(),
    subject: f("DEVICEID"),
    data: {device_id: f("DEVICEID"), global_call_id: f("GLOBALCALLID"), agent_id: f("AGENTID"), raw: e},
};
msg.headers = {"content-type": "application/json"};
return msg;
"""


def flow(proxy_port: int, url: str) -> list[dict[str, object]]:
    request = events_request(1, "ALL").decode()
    return [
        {"id": "tab", "type": "tab", "label": "uptivity-to-webhook"},
        {
            "id": "n_start", "type": "inject", "z": "tab", "name": "EVENTS request", "once": True,
            "onceDelay": "0.1", "repeat": "", "topic": "", "payload": request, "payloadType": "str",
            "props": [{"p": "payload"}], "wires": [["n_tcp"]],
        },
        {
            "id": "n_tcp", "type": "tcp request", "z": "tab", "server": "127.0.0.1", "port": str(proxy_port),
            "out": "sit", "ret": "buffer", "splitc": " ", "newline": "", "trim": False, "tls": "",
            "wires": [["n_split"]],
        },
        {"id": "n_split", "type": "function", "z": "tab", "name": "split documents", "func": SPLIT,
         "outputs": 1, "wires": [["n_xml"]]},
        {"id": "n_xml", "type": "xml", "z": "tab", "property": "payload", "attr": "", "chr": "",
         "wires": [["n_map"]]},
        {"id": "n_map", "type": "function", "z": "tab", "name": "to JSON event", "func": MAP,
         "outputs": 1, "wires": [["n_post"]]},
        {
            "id": "n_post", "type": "http request", "z": "tab", "method": "POST", "ret": "txt",
            "paytoqs": "ignore", "url": url, "tls": "", "persist": True, "proxy": "", "authType": "",
            "senderr": False, "headers": [], "wires": [[]],
        },
    ]  # fmt: skip


def write_user_dir(directory: Path, proxy_port: int, url: str) -> Path:
    """Writes settings.js and flows.json; returns the settings file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "flows.json").write_text(json.dumps(flow(proxy_port, url), indent=1))
    settings = directory / "settings.js"
    settings.write_text(
        "module.exports = {\n"
        "  uiHost: '127.0.0.1', uiPort: 0,\n"
        "  flowFile: 'flows.json', credentialSecret: false,\n"
        "  httpAdminRoot: false, httpNodeRoot: false, disableEditor: true,\n"
        "  logging: { console: { level: 'warn', metrics: false, audit: false } },\n"
        "  functionExternalModules: false, externalModules: { autoInstall: false },\n"
        "};\n"
    )
    return settings

"""`event-bridge schema asyncapi` is a valid AsyncAPI 3.0 document (the official JSON Schema)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

ROOT = Path(__file__).resolve().parents[3]
# The official AsyncAPI 3.0.0 JSON Schema from the npm package @asyncapi/specs, installed by
# scripts/setup (npm ci --prefix tests/contract_js).
SPEC = (
    ROOT
    / "tests"
    / "contract_js"
    / "node_modules"
    / "@asyncapi"
    / "specs"
    / "schemas"
    / "3.0.0-without-$id.json"
)


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    if not SPEC.exists():
        pytest.fail(
            "@asyncapi/specs is not installed: run scripts/setup test (npm ci --prefix tests/contract_js)"
        )
    spec = json.loads(SPEC.read_text())
    assert spec["$schema"] == "http://json-schema.org/draft-07/schema"
    return Draft7Validator(spec)


@pytest.fixture(scope="module")
def document() -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "schema", "asyncapi"], capture_output=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout)


def _resolve(doc: dict, ref: str) -> dict:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_asyncapi_3(validator: Draft7Validator, document: dict) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]
    assert errors == []
    assert document["asyncapi"] == "3.0.0"


def test_the_validator_rejects_a_broken_document(validator: Draft7Validator, document: dict) -> None:
    broken = json.loads(json.dumps(document))
    del broken["info"]
    broken["operations"]["receiveBinary"]["action"] = "publish"  # AsyncAPI 2 wording
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_reference_resolves_and_every_type_is_there(document: dict) -> None:
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    for ref in refs:
        _resolve(document, ref)  # KeyError if dangling
    messages = document["components"]["messages"]
    from bridge.contract.catalog import catalog

    for family in catalog().families():
        assert {f"{family}.structured", f"{family}.binary", f"{family}.nats"} <= set(messages)
        Draft202012Validator.check_schema(document["components"]["schemas"][family])
        Draft7Validator.check_schema(document["components"]["schemas"][f"{family}.event"])
    assert messages["batch"]["contentType"] == "application/cloudevents-batch+json"
    headers = messages["call.started.binary"]["headers"]["properties"]
    assert {"ce-id", "ce-type", "ce-dataschema", "webhook-id", "webhook-signature"} <= set(headers)
    assert document["channels"]["jetstream"]["address"] == "events.{vendor}.{type}"


def test_an_event_validates_against_its_asyncapi_message_payload(document: dict) -> None:
    """The AsyncAPI payloads are the catalog's schemas: a documented event fits its message."""
    from tests.unit.contract.events import callstart

    event = callstart()
    schemas = document["components"]["schemas"]
    envelope = json.loads(json.dumps(schemas["call.started.event"]))
    envelope["properties"]["data"] = schemas["call.started"]
    assert list(Draft7Validator(envelope).iter_errors(event)) == []
    assert list(Draft7Validator(envelope).iter_errors({**event, "type": "call.ended"})) != []


@pytest.mark.needs_node
@pytest.mark.needs_node
def test_the_official_asyncapi_parser_reports_no_error_or_warning(document: dict, tmp_path: Path) -> None:
    """@asyncapi/parser (the reference JavaScript parser, with its validation rules) under node."""
    script = ROOT / "tests" / "contract_js" / "validate.mjs"
    if not (ROOT / "tests" / "contract_js" / "node_modules" / "@asyncapi" / "parser").exists():
        pytest.fail(
            "@asyncapi/parser is not installed: run scripts/setup test (npm ci --prefix tests/contract_js)"
        )
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(document))
    out = subprocess.run(
        ["node", str(script), str(path)], capture_output=True, check=True, timeout=120, cwd=script.parent
    )
    result = json.loads(out.stdout)
    assert result["parsed"] is True
    serious = [d for d in result["diagnostics"] if d["severity"] <= 1]  # 0 error, 1 warning
    assert serious == []
    broken = json.loads(json.dumps(document))
    broken["channels"]["webhook"]["messages"]["call.started.structured"] = {
        "$ref": "#/components/messages/nope"
    }
    path.write_text(json.dumps(broken))
    out = subprocess.run(
        ["node", str(script), str(path)], capture_output=True, check=True, timeout=120, cwd=script.parent
    )
    assert any(d["severity"] == 0 for d in json.loads(out.stdout)["diagnostics"]), "a dangling $ref is caught"

"""`event-bridge schema list | show | export | asyncapi` (in-process, through bridge.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

from bridge import cli
from bridge.contract.catalog import catalog
from bridge.model import NORMALIZED_TYPES


def test_list_names_every_type_with_its_uri(capsys) -> None:
    assert cli.main(["schema", "list"]) == 0
    out = capsys.readouterr().out
    for t in NORMALIZED_TYPES:
        assert f"urn:event-bridge:schema:{t}:v1" in out
    assert "vendor.<vendor>.<name>" in out


def test_show_prints_the_schema_and_refuses_an_unknown_type(capsys) -> None:
    assert cli.main(["schema", "show", "vendor.encore.anything"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == "urn:event-bridge:schema:vendor:v1"
    assert cli.main(["schema", "show", "recording.exploded"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no schema for type 'recording.exploded'" in err[0]


def test_export_writes_every_schema_and_the_asyncapi_document(tmp_path: Path, capsys) -> None:
    assert cli.main(["schema", "export", str(tmp_path / "contract")]) == 0
    files = sorted((tmp_path / "contract").rglob("*.json"))
    assert len(files) == len(catalog().entries) + 1
    for entry in catalog().entries:
        path = tmp_path / "contract" / entry.family / f"v{entry.version}.json"
        assert json.loads(path.read_text()) == entry.schema
    assert json.loads((tmp_path / "contract" / "asyncapi.json").read_text())["asyncapi"] == "3.0.0"
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert cli.main(["schema", "export", str(blocked)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

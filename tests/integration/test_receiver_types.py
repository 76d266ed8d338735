"""The README's "generate receiver types" commands, run as printed: export the contract,
generate pydantic models with datamodel-code-generator, and parse real events with them."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from bridge.shaping import Shaper, ShapeSettings
from tests.unit.contract import events

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def readme_commands() -> list[list[str]]:
    """The shell lines of the README block that starts with `event-bridge schema list`."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\nevent-bridge schema list", 1)[1].split("```", 1)[0]
    block = "event-bridge schema list" + block.replace("\\\n", " ")
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("pip install")]


def test_export_and_generate_receiver_types_as_the_readme_shows(tmp_path: Path) -> None:
    commands = readme_commands()
    assert [c[0] for c in commands].count("datamodel-codegen") == 1
    for argv in commands:
        if ">" in argv:  # `schema asyncapi > asyncapi.json`
            argv, out = argv[: argv.index(">")], tmp_path / argv[argv.index(">") + 1]
        else:
            out = None
        tool = BIN / argv[0]
        assert tool.exists(), f"{argv[0]} is not installed in the venv (scripts/setup test)"
        result = subprocess.run([str(tool), *argv[1:]], cwd=tmp_path, capture_output=True, timeout=300)
        assert result.returncode == 0, (argv, result.stderr.decode()[-2000:])
        if out is not None:
            out.write_bytes(result.stdout)
    assert (tmp_path / "contract" / "recording.paused" / "v1.json").is_file()
    assert (tmp_path / "contract" / "asyncapi.json").is_file()
    generated = tmp_path / "recording_paused.py"
    spec = importlib.util.spec_from_file_location("recording_paused", generated)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["recording_paused"] = module  # pydantic resolves its annotations there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["recording_paused"]
        raise
    model = module.RecordingPaused

    path = next(p for p in events.uptivity_paths() if "recordingpaused" in p.name)
    event = events.uptivity_event(path)
    assert event["type"] == "recording.paused"
    parsed = model.model_validate(event["data"])
    assert parsed.device_id == event["data"]["device_id"]
    shaped = Shaper(ShapeSettings(redact={"device_id": "mask"}, drop_raw=True)).event(event)
    assert model.model_validate(shaped["data"]).redacted[0].field == "device_id"
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({**event["data"], "device_id": 1111})  # a number is not the contract
    del sys.modules["recording_paused"]

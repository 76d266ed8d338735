"""The schemas ship in the wheel (package-data), so an installed bridge can load them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from bridge.contract.catalog import catalog

ROOT = Path(__file__).resolve().parents[3]


def test_the_wheel_carries_every_schema(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("event_bridge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for entry in catalog().entries:
        assert f"bridge/schemas/{entry.family}/v{entry.version}.json" in names
    assert "bridge/contract/catalog.py" in names

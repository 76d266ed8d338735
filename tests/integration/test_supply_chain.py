"""The lock files pin every distribution by hash, match pyproject.toml, and are what the
venv was built from (issue 15, item 14)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements.lock", "requirements-test.lock")
ENTRY = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def entries(lock: str) -> dict[str, tuple[str, str | None, list[str]]]:
    """name -> (version, marker, hashes) for each requirement of a lock file."""
    found: dict[str, tuple[str, str | None, list[str]]] = {}
    current = ""
    for line in (ROOT / lock).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ENTRY.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (match.group(2), match.group(3), [])
            continue
        hashed = re.match(r"^\s+--hash=sha256:([0-9a-f]{64})\s*\\?$", line)
        assert hashed and current, f"{lock}: unexpected line {line!r}"
        found[current][2].append(hashed.group(1))
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_requirement_is_pinned_with_hashes(lock: str) -> None:
    found = entries(lock)
    assert len(found) > 20
    assert all(hashes for _, _, hashes in found.values()), [n for n, e in found.items() if not e[2]]
    # pip and setuptools are locked too: scripts/setup upgrades and builds with them.
    assert {"pip", "setuptools", "signalrcore", "trio"} <= set(found)


def test_lock_files_are_up_to_date_with_pyproject() -> None:
    fingerprint = subprocess.run(
        [str(ROOT / "scripts" / "lock"), "--fingerprint"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for lock in LOCKS:
        text = (ROOT / lock).read_text()
        assert f"# pyproject fingerprint: {fingerprint}\n" in text, f"{lock} is stale: run scripts/lock"
    runtime, test = entries("requirements.lock"), entries("requirements-test.lock")
    assert set(runtime) < set(test)
    assert all(test[name][0] == runtime[name][0] for name in runtime)


def test_signalrcore_is_pinned_exactly() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (signalrcore,) = [d for d in deps if d.startswith("signalrcore")]
    assert re.fullmatch(r"signalrcore==[0-9.]+", signalrcore)
    assert entries("requirements.lock")["signalrcore"][0] == signalrcore.split("==")[1]


def test_the_venv_holds_exactly_the_locked_versions() -> None:
    """scripts/setup test built this venv from requirements-test.lock."""
    wrong = {}
    for name, (version, marker, _) in entries("requirements-test.lock").items():
        if marker and not Marker(marker).evaluate():
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs locked (run scripts/setup test): {wrong}"


def test_setup_installs_from_the_lock_with_hashes_required() -> None:
    setup = (ROOT / "scripts" / "setup").read_text()
    assert re.search(r"pip install [^\n]*--require-hashes -r \"\$lock\"", setup)
    assert re.search(r"pip install [^\n]*--no-deps[^\n]*-e \.", setup)
    assert "-e '.[test]'" not in setup and "install --quiet -e .\n" not in setup

"""The README's Encore mapping table: every row names tests, and every named test exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TESTS = [*ROOT.glob("tests/unit/encore/test_*.py"), *ROOT.glob("tests/integration/test_encore_*.py")]


def test_every_row_of_the_encore_mapping_table_has_a_test() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Encore: what the bridge emits") :]
    rows = [line for line in section.split("\n\n")[3].splitlines() if line.startswith("| ")][1:]
    assert len(rows) >= 20
    defined = {m for path in TESTS for m in re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M)}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4, row
        named = re.findall(r"`(test_\w+)`", cells[3])
        if cells[3].startswith("same"):
            continue  # the parametrized test of the row above
        assert named, row
        missing = [t for t in named if t not in defined]
        assert not missing, (row, missing)

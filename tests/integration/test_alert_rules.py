"""contrib/: the alert rules pass promtool (check and unit tests), the dashboard's PromQL parses.

Which metrics they use is checked against a running bridge in test_metrics_contract.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "event-bridge-rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "event-bridge-rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "event-bridge.json"


def promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: scripts/setup test installs Debian's prometheus package")
    return tool


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return exprs


def test_rules_pass_promtool_check() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 6 rules found" in proc.stdout


def test_rules_unit_tests_on_synthetic_series() -> None:
    proc = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULES.parent
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_rule_tests_cover_every_alert() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts and alerts == tested


def test_a_broken_rule_test_fails(tmp_path: Path) -> None:
    """The unit tests can fail: a shifted expectation is caught."""
    shutil.copy(RULES, tmp_path / RULES.name)
    broken = RULE_TESTS.read_text().replace("eval_time: 22m", "eval_time: 19m")
    (tmp_path / RULE_TESTS.name).write_text(broken)
    proc = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode != 0


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every panel query, with Grafana's variables filled in, is valid PromQL (as recording rules)."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        if concrete.startswith("label_values("):
            metric = concrete[len("label_values(") :].split(",")[0]
            concrete = f"count by (instance) ({metric})"
        lines += [f"      - record: dashboard:panel_{i}", f"        expr: {json.dumps(concrete)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_covers_what_operators_need() -> None:
    text = " ".join(dashboard_exprs())
    for metric in (
        "event_bridge_events_received_total",
        "event_bridge_outbox_pending",
        "event_bridge_outbox_oldest_pending_age_seconds",
        "event_bridge_delivery_latency_seconds_bucket",
        "event_bridge_sink_up",
        "event_bridge_outbox_dead_letters",
        "event_bridge_parse_errors_total",
        "event_bridge_encore_sweep_seconds",
        "event_bridge_source_connected",
    ):
        assert metric in text, metric

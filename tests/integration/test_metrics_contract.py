"""Every metric the README documents, and every one the dashboard and alert rules use, is exported.

A real bridge runs on the three vendors' own simulators with a real webhook receiver;
its /metrics is scraped over HTTP. Component metrics come through the contract
(``stats()`` keys in ``bridge.components.STAT_METRICS``), so each source must report
its numbers there for this to pass.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from bridge import admin, logs
from bridge.asgi import serve_asgi
from bridge.config import load
from bridge.service import Bridge
from tests.integration.operators import free_port, start_simulators, three_vendor_config
from tests.support.helpers import wait_for
from tests.support.receivers import Receiver

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bevent_bridge_[a-z_]+[a-z]\b")
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum")


def readme_metrics() -> set[str]:
    """The names in the README's metrics table (first column)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| metric | meaning |") :].split("\n\n")[0]
    names = set()
    for line in table.splitlines()[2:]:
        first = line.split("|")[1]
        names.update(NAME.findall(first))
    return names


def contrib_metrics() -> set[str]:
    names = set(NAME.findall((ROOT / "contrib" / "grafana" / "event-bridge.json").read_text()))
    names |= set(NAME.findall((ROOT / "contrib" / "prometheus" / "event-bridge-rules.yml").read_text()))
    return names


def samples(text: str) -> dict[str, set[str]]:
    """Sample name -> the values of its source/sink labels."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(
                v for k, v in sample.labels.items() if k in ("source", "sink")
            )
    return out


def exported(name: str, scraped: dict[str, set[str]]) -> bool:
    return any(name + suffix in scraped for suffix in SUFFIXES) or (
        name.endswith(("_bucket", "_total")) and name in scraped
    )


async def test_readme_dashboard_and_rules_metrics_are_exported_after_a_run_of_each_source(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    receiver = Receiver()
    hook = await nursery.start(serve_asgi, receiver.app)
    admin_port = free_port()
    config = load(three_vendor_config(tmp_path, hooks={"crm": hook}, admin_port=admin_port))
    await start_simulators(nursery, config)
    logs.redactor.update(config.secrets.values)
    bridge = Bridge(config, shutdown_grace=1.0)
    admin.attach(bridge)
    await nursery.start(bridge.run)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}") as client:

            async def scrape() -> dict[str, set[str]]:
                return samples((await client.get("/metrics")).text)

            scraped: dict[str, set[str]] = {}

            async def every_source_delivered() -> bool:
                nonlocal scraped
                scraped = await scrape()
                received = scraped.get("event_bridge_events_received_total", set())
                return {"uptivity", "anywherenow", "encore"} <= received and "crm" in scraped.get(
                    "event_bridge_delivery_latency_seconds_count", set()
                )

            with trio.fail_after(60):
                while not await every_source_delivered():
                    await trio.sleep(0.2)
            await wait_for(lambda: bridge.admin.cache.refreshes >= 2, timeout=10)
            scraped = await scrape()
    finally:
        bridge.request_stop()

    documented = readme_metrics()
    assert len(documented) >= 14  # the table was found and read
    missing = sorted(n for n in documented if not exported(n, scraped))
    assert not missing, f"in the README but not exported: {missing}"
    used = contrib_metrics()
    assert len(used) >= 10
    missing = sorted(n for n in used if not exported(n, scraped))
    assert not missing, f"used by contrib/ but not exported: {missing}"

    # Through the contract: each source reports its stats() numbers under its own name.
    for key in ("event_bridge_source_events_read_total", "event_bridge_parse_errors_total"):
        assert {"uptivity", "anywherenow", "encore"} <= scraped[key], key
    assert "encore" in scraped["event_bridge_encore_sweep_seconds"]
    assert "anywherenow" in scraped["event_bridge_source_reconciled_events_total"]

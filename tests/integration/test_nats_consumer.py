"""The durable pull consumer from the README (extracted from README.md and run as printed),
against a stream the bridge filled: a consumer that stops resumes after its last ack."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from bridge.simulators.uptivity import UptivitySimulator
from tests.integration.test_nats_sink import nats_config
from tests.support.helpers import running_bridge, wait_for
from tests.support.nats_server import NatsServer, running_server

pytestmark = [pytest.mark.needs_nats, pytest.mark.slow]


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    yield from running_server(tmp_path)


README = Path(__file__).resolve().parents[2] / "README.md"
URL_IN_README = '"nats://127.0.0.1:4222"'


def readme_consumer() -> str:
    """The consumer code block of the README, as printed there (not a hand copy)."""
    section = README.read_text().split("**A durable pull consumer (Python, nats-py).**", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count(URL_IN_README) == 1 and code.rstrip().endswith("asyncio.run(main())")
    return code


async def consume(url: str, got: list[dict], *, until: int) -> None:
    """Run the README's main() until ``until`` events are handled and acknowledged, then stop it."""
    import nats

    code = readme_consumer().replace(URL_IN_README, repr(url)).rstrip().removesuffix("asyncio.run(main())")
    namespace: dict = {"handle": got.append}
    exec(compile(code, str(README), "exec"), namespace)
    task = asyncio.ensure_future(namespace["main"]())
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(got)} of {until} handled"
            await asyncio.sleep(0.05)
            if task.done():
                task.result()  # the example failed: show why
            if len(got) >= until:
                info = await js.consumer_info("EVENTS", "billing")
                if info.num_ack_pending == 0:
                    break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # A stopped consumer's last pull request lives on in the server until it expires
        # (the example's 5 s): anything published meanwhile would be handed to it, and come
        # back only after ack_wait. Wait until the server has no pull request waiting.
        while (await js.consumer_info("EVENTS", "billing")).num_waiting:
            assert asyncio.get_running_loop().time() < deadline, "the pull request never expired"
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await nc.close()


async def test_durable_pull_consumer_resumes_after_its_last_ack(tmp_path, nursery, nats_server) -> None:
    sim = UptivitySimulator(rate=0, count=30, numbered=True)
    sim_port = await nursery.start(sim.serve)
    async with running_bridge(nats_config(tmp_path, sim_port, nats_server.url)) as bridge:
        await wait_for(lambda: bridge.sinks["js"].health.delivered == 30)
    got: list[dict] = []
    await trio.to_thread.run_sync(lambda: asyncio.run(consume(nats_server.url, got, until=30)))
    assert [int(e["data"]["raw"]["EVENTXREF"]) for e in got] == list(range(1, 31))
    # Events published while the consumer is stopped: its next run gets those, and only those.
    later = UptivitySimulator(rate=0, count=5, numbered=True, group="later")
    later_port = await nursery.start(later.serve)
    # Another source (its own ids) with its own state directory: nothing of the first run
    # (remembered device state, identical documents) plays a part.
    config = nats_config(tmp_path, later_port, nats_server.url, state="later", name="later.toml")
    config.write_text(config.read_text().replace('name = "up"', 'name = "up-later"'))
    async with running_bridge(config) as bridge:
        await wait_for(lambda: bridge.sinks["js"].health.delivered == 5)
    await trio.to_thread.run_sync(lambda: asyncio.run(consume(nats_server.url, got, until=35)))
    assert len(got) == 35, "the second run starts where the first one stopped"
    assert [e["data"]["source_name"] for e in got[30:]] == ["up-later"] * 5
    assert len({e["id"] for e in got}) == 35

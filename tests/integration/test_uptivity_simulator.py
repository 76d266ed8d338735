"""The simulator's journal over a real socket: what it wrote on each connection, and when."""

from __future__ import annotations

import trio

from bridge.simulators.uptivity import UptivitySimulator


def request(body: str) -> bytes:
    return f"<REQUEST>\n{body}\n</REQUEST>\r\n".encode()


async def test_the_journal_records_each_write_with_its_completion_time(nursery) -> None:
    sim = UptivitySimulator(rate=0, count=3, numbered=True)
    port = await nursery.start(sim.serve)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        request("  <REQUESTID>1</REQUESTID>\n  <TYPE>EVENTS</TYPE>\n  <EVENTCLASS>ALL</EVENTCLASS>")
    )
    await sim.wait_produced(3)
    with trio.fail_after(10):
        while len(sim.written().get(1, [])) < 3:
            await trio.sleep(0.01)
    ((connection, entries),) = sim.writes().items()
    assert [n for n, _ in entries] == [1, 2, 3] == sim.written()[connection]
    times = [t for _, t in entries]
    assert times == sorted(times)
    await stream.aclose()

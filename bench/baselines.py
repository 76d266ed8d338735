"""Baselines the bench divides by, each run as its own process.

* ``lxml``: parse the very bytes the Uptivity simulator sends (``numbered_event``) into
  dicts in a tight loop: the practical ceiling for XML ingest in Python.
* ``httpx``: a bare keep-alive POST loop (httpx.AsyncClient on trio, the client the
  webhook sink uses) with N requests in flight, to the same receiver.
* ``encore``: bare httpx sweeps of ``PortStatusEX`` over the same ports, same
  concurrency, against the same simulator (what the simulator itself allows).
* ``relay``: the thinnest possible Uptivity -> webhook relay (no parsing beyond the
  document split, no outbox, no signing): connect, send EVENTS, POST each document.

Each prints one JSON line with its figures on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import httpx
import trio
from lxml import etree

from bridge.simulators.uptivity import numbered_event
from bridge.sources.uptivity import events_request


def lxml_ceiling(count: int, devices: int, seconds: float) -> dict[str, float]:
    docs = [numbered_event(n, devices) for n in range(1, count + 1)]
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        for doc in docs:
            root = etree.fromstring(doc, parser)
            {c.tag: ({g.tag: g.text for g in c} if len(c) else c.text) for c in root}
        done += len(docs)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "events": done,
        "seconds": elapsed,
        "events_per_s": done / elapsed,
        "cpu_us_per_event": cpu / done * 1e6,
        "bytes_per_event": sum(map(len, docs)) / len(docs),
    }


async def httpx_loop(
    url: str, count: int, concurrency: int, body: bytes, content_type: str
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": content_type}
    remaining = count
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        for _ in range(concurrency):  # warm the connections
            await client.post(url, content=body, headers=headers)

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        started, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "requests": count,
        "seconds": elapsed,
        "requests_per_s": count / elapsed,
        "cpu_us_per_request": cpu / count * 1e6,
    }


async def relay(port: int, url: str, concurrency: int) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(events_request(1, "ALL"))
    send, receive = trio.open_memory_channel[bytes](100_000)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def worker() -> None:
            async for doc in receive:
                body = json.dumps({"xml": doc.decode()}).encode()
                await client.post(url, content=body, headers={"content-type": "application/json"})

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
            buf = b""
            end = b"</CALLCOPYEVENT>"
            while data := await stream.receive_some(65536):
                buf += data
                while (pos := buf.find(end)) >= 0:
                    doc, buf = buf[: pos + len(end)], buf[pos + len(end) :]
                    if b"<CALLCOPYEVENT" in doc:
                        await send.send(doc.strip())


async def encore_sweep(url: str, ports: int, concurrency: int, sweeps: int) -> dict[str, float]:
    """Bare httpx sweeps of PortStatusEX over ``ports`` ports, ``concurrency`` in flight."""
    from bridge.sources.encore.soap import DEFAULT_NAMESPACE, DEFAULT_SOAP_ACTION, build_envelope

    action = DEFAULT_SOAP_ACTION.format(namespace=DEFAULT_NAMESPACE, operation="PortStatusEX")
    headers = {"content-type": "text/xml; charset=utf-8", "soapaction": f'"{action}"'}
    bodies = [
        build_envelope("PortStatusEX", [("Unit", "1"), ("Port", str(p))], DEFAULT_NAMESPACE)
        for p in range(1, ports + 1)
    ]
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    times: list[float] = []
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        for _ in range(sweeps):
            todo = iter(bodies)

            async def worker(todo: Iterator[bytes]) -> None:
                for body in todo:
                    response = await client.post(url, content=body, headers=headers)
                    response.raise_for_status()

            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker, todo)
            times.append(time.perf_counter() - started)
    return {"sweeps": sweeps, "sweep_s": min(times[1:] or times), "all": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lxml")
    p.add_argument("--count", type=int, default=7000)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("httpx")
    p.add_argument("--url", required=True)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--body-file", required=True)
    p.add_argument("--content-type", default="application/cloudevents+json")
    p = sub.add_parser("encore")
    p.add_argument("--url", required=True)
    p.add_argument("--ports", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--sweeps", type=int, default=3)
    p = sub.add_parser("relay")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.cmd == "lxml":
        print(json.dumps(lxml_ceiling(args.count, args.devices, args.seconds)), flush=True)
    elif args.cmd == "httpx":
        with open(args.body_file, "rb") as f:
            body = f.read()
        result = trio.run(httpx_loop, args.url, args.count, args.concurrency, body, args.content_type)
        print(json.dumps(result), flush=True)
    elif args.cmd == "encore":
        result = trio.run(encore_sweep, args.url, args.ports, args.concurrency, args.sweeps)
        print(json.dumps(result), flush=True)
    else:
        trio.run(relay, args.port, args.url, args.concurrency)


if __name__ == "__main__":
    main()

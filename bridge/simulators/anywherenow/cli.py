"""``event-bridge simulate anywherenow``: the simulator with a scripted call generator."""

from __future__ import annotations

import argparse
import itertools
import random
import uuid
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import trio

from bridge.simulators.anywherenow.server import AnywhereNowSimulator
from bridge.simulators.anywherenow.state import ACTIONS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5080, help="port to bind (default 5080; 0 picks one)")
    parser.add_argument("--hub-path", default="/attendantservice/recordinghub", help="SignalR hub path")
    parser.add_argument(
        "--rest-prefix", default="/attendantservice", help="prefix of the REST API (…/api/v2/recording)"
    )
    parser.add_argument(
        "--target", default="RecordingStateChangedEvent", help="hub method name clients listen to"
    )
    parser.add_argument(
        "--ucc", action="append", default=None, help="UCC name(s) for generated calls (repeatable)"
    )
    parser.add_argument(
        "--rate", type=float, default=1.0, help="generated state changes per second (default 1)"
    )
    parser.add_argument(
        "--count", type=int, default=0, help="stop generating after this many changes (0 = forever)"
    )
    parser.add_argument(
        "--casing", choices=("camel", "pascal"), default="camel", help="property casing of event payloads"
    )
    parser.add_argument(
        "--action-as-name",
        action="store_true",
        help='send StateAction as a name ("Start") instead of a number',
    )
    parser.add_argument(
        "--require-token", default=None, help="require 'Authorization: Bearer TOKEN' (or ?access_token=)"
    )
    parser.add_argument(
        "--ping-interval", type=float, default=15.0, help="seconds between hub pings (default 15)"
    )
    parser.add_argument(
        "--drop-every", type=float, default=0.0, help="drop all connections every N seconds (0 = never)"
    )
    parser.add_argument(
        "--drop-mode",
        choices=("abort", "close", "silent"),
        default="abort",
        help="how to drop (default abort)",
    )
    parser.add_argument(
        "--outage",
        type=float,
        default=0.0,
        help="after each drop, refuse connections for N seconds (events continue: tests reconciliation)",
    )
    parser.add_argument(
        "--restart-every", type=float, default=0.0, help="simulate a hub restart every N seconds (0 = never)"
    )
    parser.add_argument("--no-v2", action="store_true", help="serve only the v1 REST routes")
    parser.add_argument(
        "--agents-cannot-edit", action="store_true", help="capabilities answer AgentCanEditRecordings=false"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="generate events even before the first client connects"
    )
    parser.add_argument(
        "--not-found",
        choices=("404", "200"),
        default="404",
        help="answer an unknown session with HTTP 404 or HTTP 200, both with an ErrorMessage (default 404)",
    )
    parser.add_argument(
        "--report-uninitialized",
        action="store_true",
        help="REST answers RecordingState 0 for calls that are recording (as the doc's example does)",
    )
    parser.add_argument(
        "--rest-casing", choices=("pascal", "camel"), default="pascal", help="property casing of REST answers"
    )
    parser.add_argument(
        "--silent-rate",
        type=float,
        default=0.0,
        help="share (0..1) of generated Mark/UnMark/Save/Delete changes made without a hub message",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for generated calls")
    parser.add_argument("--certfile", default=None, help="serve HTTPS/WSS with this certificate (PEM)")
    parser.add_argument("--keyfile", default=None, help="private key for --certfile")


def _call_script(rng: random.Random) -> list[int]:
    """One plausible call: Start, maybe Pause/Start, maybe Mark, Stop, Save or Delete."""
    script = [1]
    if rng.random() < 0.4:
        script += [3, 1]
    if rng.random() < 0.2:
        script.append(6)
    script.append(2)
    script.append(4 if rng.random() < 0.8 else 5)
    return script


async def generate(
    sim: AnywhereNowSimulator,
    uccs: list[str],
    rate: float,
    count: int,
    seed: int | None,
    *,
    echo: bool = True,
    silent_rate: float = 0.0,
) -> None:
    """Interleave a few calls' scripts at ``rate`` changes per second; ``silent_rate`` of
    the Mark/UnMark/Save/Delete changes happen without a hub message (only REST shows them)."""
    rng = random.Random(seed)
    active: list[tuple[str, str, list[int]]] = []
    sent = itertools.count(1)
    while True:
        while len(active) < 3:
            active.append((rng.choice(uccs), str(uuid.UUID(int=rng.getrandbits(128))), _call_script(rng)))
        ucc, correlation_id, script = rng.choice(active)
        action = script.pop(0)
        if not script:
            active.remove((ucc, correlation_id, script))
        if action in (4, 5, 6, 7) and rng.random() < silent_rate:
            sim.set_state(ucc, correlation_id, action)
            reached = 0
        else:
            reached = await sim.send_state(ucc, correlation_id, action)
        n = next(sent)
        if echo:
            print(f"[{n}] {ucc} {correlation_id} {ACTIONS[action]} -> {reached} client(s)", flush=True)
        if count and n >= count:
            return
        await trio.sleep(1.0 / rate if rate > 0 else 0)


async def _every(seconds: float, action: Any) -> None:
    while True:
        await trio.sleep(seconds)
        await action()


async def main(args: argparse.Namespace) -> None:
    sim = AnywhereNowSimulator(
        hub_path=args.hub_path,
        rest_prefix=args.rest_prefix,
        target=args.target,
        require_token=args.require_token,
        casing=args.casing,
        action_as_name=args.action_as_name,
        ping_interval=args.ping_interval,
        v2_enabled=not args.no_v2,
        agent_can_edit=not args.agents_cannot_edit,
        not_found=args.not_found,
        report_uninitialized=args.report_uninitialized,
        rest_casing=args.rest_casing,
    )
    scheme = "https" if args.certfile else "http"

    async def drop() -> None:
        n = await sim.drop_connections(args.drop_mode)
        print(f"dropped {n} connection(s) ({args.drop_mode})", flush=True)
        if args.outage > 0:
            sim.available = False
            print(f"hub down for {args.outage:g}s", flush=True)
            await trio.sleep(args.outage)
            sim.available = True
            print("hub up again", flush=True)

    async def restart() -> None:
        n = await sim.restart()
        print(f"restarted hub ({n} connection(s) dropped)", flush=True)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: sim.serve(
                args.host, args.port, certfile=args.certfile, keyfile=args.keyfile, task_status=task_status
            )
        )
        host = args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1"
        print(f"AnywhereNow simulator: hub {scheme}://{host}:{port}{sim.hub_path}", flush=True)
        print(f"                       rest_url {scheme}://{host}:{port}{sim.rest_prefix}", flush=True)
        if args.drop_every > 0:
            nursery.start_soon(_every, args.drop_every, drop)
        if args.restart_every > 0:
            nursery.start_soon(_every, args.restart_every, restart)
        if args.rate > 0:
            if not args.no_wait:
                print("waiting for the first client before generating events", flush=True)
                await sim.wait_for_clients(1, poll=0.1)
            nursery.start_soon(
                partial(generate, silent_rate=args.silent_rate),
                sim,
                args.ucc or ["ucc-demo-name"],
                args.rate,
                args.count,
                args.seed,
            )


class DemoHub:
    """For ``event-bridge demo``: a hub where an AnywhereNow source connects, generating calls."""

    def __init__(self, source: Any, rate: float = 1.0) -> None:
        settings = source.settings
        hub = urlsplit(settings.hub_url)
        rest = urlsplit(settings.rest_url) if settings.rest_url else None
        self.host = hub.hostname or "127.0.0.1"
        self.port = hub.port or (443 if hub.scheme in ("https", "wss") else 80)
        self.uccs = list(settings.ucc_names) or ["ucc-demo-name"]
        self.rate = rate
        self.sim = AnywhereNowSimulator(
            hub_path=hub.path,
            rest_prefix=rest.path if rest else "/attendantservice",
            target=settings.target,
            require_token=settings.access_token,
        )

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(self.sim.serve, self.host, self.port))
            task_status.started(port)
            await self.sim.wait_for_clients(1, poll=0.1)
            await generate(self.sim, self.uccs, self.rate, 0, None, echo=False)


def for_source(source: Any) -> DemoHub:
    return DemoHub(source)

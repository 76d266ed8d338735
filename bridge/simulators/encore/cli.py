"""``event-bridge simulate encore`` and the demo recorder of ``scripts/demo``."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import trio

from bridge.simulators.encore.protocol import SERVICE_NS
from bridge.simulators.encore.server import EncoreSimulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8086, help="TCP port (default 8086; 0 = any free)")
    parser.add_argument(
        "--api-version",
        choices=("7.1", "7.0"),
        default="7.1",
        help="7.0 has no PortStatusEX/ResumeRecording and InitUser takes userName/machineName",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--fixed-duration",
        type=int,
        default=None,
        help="always answer this stateDuration for active states (the vendor test service says 20)",
    )
    parser.add_argument(
        "--no-url-player",
        action="store_true",
        help="GetURL answers 658 (no URL player address in the service's Web.config)",
    )
    parser.add_argument("--units", type=int, default=1, help="recording units that exist (default 1)")
    parser.add_argument("--ports-per-unit", type=int, default=288, help="ports per unit (default 288)")
    parser.add_argument(
        "--unassigned-extension",
        action="append",
        default=[],
        metavar="EXT",
        help="InitStation for EXT answers 660 (repeatable)",
    )
    parser.add_argument(
        "--unassigned-user",
        action="append",
        default=[],
        metavar="USER",
        help="InitUser for USER answers 655 (repeatable)",
    )
    parser.add_argument("--namespace", default=SERVICE_NS, help="service target namespace")
    parser.add_argument("--certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--keyfile", default=None, help="private key for --certfile (PEM)")


def build(args: argparse.Namespace) -> EncoreSimulator:
    sim = EncoreSimulator(
        api_version=args.api_version,
        latency=args.latency,
        units=args.units,
        ports_per_unit=args.ports_per_unit,
        fixed_duration=args.fixed_duration,
        namespace=args.namespace,
        url_player=not args.no_url_player,
    )
    for ext in args.unassigned_extension:
        sim.resolution_errors[f"ext:{ext}"] = 660
    for user in args.unassigned_user:
        sim.resolution_errors[f"user:{user}"] = 655
    return sim


async def main(args: argparse.Namespace) -> None:
    """Serve until Ctrl-C, printing the endpoint URL to use as ``url`` in the config."""
    sim = build(args)
    async with trio.open_nursery() as nursery:
        serve = partial(sim.serve, args.host, args.port, certfile=args.certfile, keyfile=args.keyfile)
        port = await nursery.start(serve)
        scheme = "https" if args.certfile else "http"
        print(
            f"Encore Web API {sim.api_version} simulator on {scheme}://{args.host}:{port}/WebAPI/ECAPI.svc",
            flush=True,
        )
        print(
            "Drive it with SOAP requests (Unit, Port): StartRecording, PauseRecording, ResumeRecording, "
            "StopRecording, CancelRecording, GetURL, and SimHold / SimRetrieve to put a call on hold "
            "(SUSPENDED).",
            flush=True,
        )


class DemoRecorder:
    """For ``event-bridge demo``: an Encore server where the source points, with a recording
    on each of its explicit ports walking through start, pause, resume, hold, retrieve, stop."""

    SCRIPT = ("start", "pause", "resume", "hold", "retrieve", "stop")

    def __init__(self, source: Any, step_seconds: float = 2.0) -> None:
        url = urlsplit(source.settings.url)
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        # [[sources.encore.ports]] tables (objects with .unit/.port) or (unit, port) pairs.
        self.ports = [
            (str(p.unit), str(p.port)) if hasattr(p, "unit") else (str(p[0]), str(p[1]))
            for p in source.settings.ports
        ] or [("1", "7")]
        self.step_seconds = step_seconds
        self.sim = EncoreSimulator()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(self.sim.serve, self.host, self.port))
            task_status.started(port)
            while True:
                for action in self.SCRIPT:
                    await trio.sleep(self.step_seconds)
                    for unit, unit_port in self.ports:
                        getattr(self.sim, action)(unit, unit_port)


def for_source(source: Any) -> DemoRecorder:
    return DemoRecorder(source)

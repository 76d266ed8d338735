"""The ``event-bridge`` command line.

Subcommands are small: each parses its arguments and calls into the package. Simulators
are found by name (``bridge.simulators.<vendor>``), so a new one needs no edit here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
import trio

from bridge import __version__, exits, logs, registry
from bridge.config import BridgeConfig, ConfigError, load
from bridge.errors import StartupError

EXIT_CONFIG = exits.CONFIG  # kept for callers of the old name
DEFAULT_CONFIG = "/etc/event-bridge/bridge.toml"


def _simulator_names() -> list[str]:
    return sorted(registry.SIMULATORS)


def _load_config(path: str) -> BridgeConfig:
    config = load(path)
    logs.redactor.update(config.secrets.values)
    return config


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    for warning in config.warnings:
        print(f"event-bridge: warning: {logs.safe_text(warning)}", file=sys.stderr)
    print(
        f"{config.file}: OK — {len(config.sources)} source(s): "
        + ", ".join(f"{c.kind}:{c.name}" for c in config.sources)
        + f"; {len(config.sinks)} sink(s): "
        + ", ".join(f"{c.kind}:{c.name}" for c in config.sinks)
        + f"; state in {config.state_dir}"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.service import Bridge, run_with_signals, startup_error

    config = _load_config(args.config)
    logs.configure(args.log_level or config.log_level)
    for warning in config.warnings:
        structlog.get_logger("bridge.config").warning("config_warning", warning=logs.safe_text(warning))
    bridge = Bridge(config, shutdown_grace=args.shutdown_grace)
    for hook in _service_hooks():
        hook(bridge, args)
    try:
        trio.run(run_with_signals, bridge)
    except BaseException as exc:
        error = startup_error(exc)
        if error is None:
            raise
        print(f"event-bridge: {logs.safe_text(str(error))}", file=sys.stderr)
        return error.exit_status
    return exits.OK if bridge.stopped_cleanly else exits.UNCLEAN


def _service_hooks() -> list[Any]:
    """Optional integrations (systemd notify, admin HTTP) that attach tasks to the bridge."""
    hooks = []
    for module_name in ("bridge.systemd", "bridge.admin"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        hooks.append(module.attach)
    return hooks


def cmd_simulate(args: argparse.Namespace) -> int:
    # Only the chosen simulator is imported: a CLI call never pays for (or depends on)
    # the other vendors' simulators.
    module = importlib.import_module(registry.SIMULATORS[args.vendor])
    parser = argparse.ArgumentParser(prog=f"event-bridge simulate {args.vendor}", description=module.__doc__)
    module.add_arguments(parser)
    options = parser.parse_args(args.options)
    options.log_level = args.log_level
    args = options
    logs.configure(args.log_level or "info")
    try:
        trio.run(module.main, args)
    except KeyboardInterrupt:
        pass
    return 0


def _parse_time(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-11-22T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="event-bridge",
        description="Bridge call-recording platforms (Uptivity, AnywhereNow, Encore) to webhooks, "
        "logs and NATS.",
    )
    parser.add_argument("--version", action="version", version=f"event-bridge {__version__}")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bridge")
    run.add_argument(
        "--config", "-c", default=DEFAULT_CONFIG, help=f"TOML config file (default {DEFAULT_CONFIG})"
    )
    run.add_argument(
        "--shutdown-grace", type=float, default=10.0, help="seconds to finish deliveries on SIGTERM"
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check-config", help="validate a config file and exit (0 ok, 2 invalid, 5 unusable TLS file)"
    )
    check.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    check.set_defaults(func=cmd_check_config)

    from bridge import demo

    demo_parser = sub.add_parser(
        "demo", help="run the bridge against its built-in simulators (no setup needed)"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.cmd_demo)

    simulate = sub.add_parser(
        "simulate",
        help="run a vendor simulator on loopback",
        description="Simulators: " + ", ".join(_simulator_names()) + ". "
        "`event-bridge simulate VENDOR --help` lists a simulator's options.",
    )
    simulate.add_argument("vendor", choices=_simulator_names(), metavar="VENDOR")
    simulate.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    simulate.set_defaults(func=cmd_simulate)

    from bridge.admin import status

    status_parser = sub.add_parser("status", help="summary of sources, sinks and outbox (--watch to follow)")
    status.add_arguments(status_parser)
    status_parser.set_defaults(func=lambda args: status.cmd_status(args, _load_config))

    for name in ("bridge.commands",):
        try:
            extra = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        extra.register(sub, _load_config, _parse_time)
    importlib.import_module("bridge.contract.cli").register(sub)  # event-bridge schema ...
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        status, what = exits.for_config_error(exc)
        print(f"event-bridge: {what}: {logs.safe_text(str(exc))}", file=sys.stderr)  # no URL credentials
        return status
    except StartupError as exc:
        print(f"event-bridge: {logs.safe_text(str(exc))}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return exits.INTERRUPTED

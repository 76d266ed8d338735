"""``event-bridge schema list | show TYPE | export DIR | asyncapi``: the contract, for receivers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bridge.contract.asyncapi import document
from bridge.contract.catalog import catalog
from bridge.errors import StartupError

__all__ = ["register"]


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def cmd_list(args: argparse.Namespace) -> int:
    cat = catalog()
    for family in cat.families():
        entry = cat.latest(family)
        vendors = ",".join(entry.vendors)
        print(f"{entry.title:32} v{entry.version}  {vendors:28} {entry.uri}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    cat = catalog()
    try:
        entry = cat.for_type(args.type) if args.type != "vendor" else cat.latest("vendor")
    except KeyError:
        print(
            f"event-bridge: no schema for type {args.type!r}; `event-bridge schema list` lists them",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(_dump(entry.schema))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """One file per schema (``<family>/v<N>.json``) plus ``asyncapi.json``."""
    cat = catalog()
    root = Path(args.directory)
    try:
        for entry in cat.entries:
            path = root / entry.family / f"v{entry.version}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(_dump(entry.schema), encoding="utf-8")
        (root / "asyncapi.json").write_text(_dump(document(cat)), encoding="utf-8")
    except OSError as exc:
        print(f"event-bridge: cannot write {root}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{root}: {len(cat.entries)} schemas and asyncapi.json")
    return 0


def cmd_asyncapi(args: argparse.Namespace) -> int:
    sys.stdout.write(_dump(document(catalog())))
    return 0


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = func(args)
        except StartupError as exc:
            print(f"event-bridge: {exc}", file=sys.stderr)
            return 3
        return result

    return run


def register(sub: Any) -> None:
    """Add ``schema`` to the CLI's subcommands (``sub`` is argparse's subparsers action)."""
    schema = sub.add_parser("schema", help="the event contract: JSON Schemas and the AsyncAPI document")
    actions = schema.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every event type with its schema version and URI")
    listing.set_defaults(func=_guarded(cmd_list))
    show = actions.add_parser("show", help="print the JSON Schema of TYPE's data")
    show.add_argument("type", metavar="TYPE", help="an event type, e.g. call.started or vendor.uptivity.x")
    show.set_defaults(func=_guarded(cmd_show))
    export = actions.add_parser("export", help="write every schema and asyncapi.json under DIR")
    export.add_argument("directory", metavar="DIR")
    export.set_defaults(func=_guarded(cmd_export))
    asyncapi = actions.add_parser("asyncapi", help="print the AsyncAPI 3.0 document (JSON)")
    asyncapi.set_defaults(func=_guarded(cmd_asyncapi))

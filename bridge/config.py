"""Configuration: one TOML file, validated at start, errors that name file, key and fix.

Each ``[[sources.<kind>]]`` / ``[[sinks.<kind>]]`` table is read into the settings class
its kind registers (:mod:`bridge.registry`, :mod:`bridge.settings`), so adding a vendor
or a sink never touches this module. :class:`Table` holds the typed getters every error
of which names file and key.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge import registry
from bridge.components import Configured
from bridge.errors import ConfigError
from bridge.quarantine import QuarantineSettings
from bridge.settings import Validator, load_settings, setting, settings

__all__ = ["BridgeConfig", "ConfigError", "Context", "Secrets", "Table", "load", "parse"]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CRED_REF = re.compile(r"\$\{credential:([A-Za-z0-9_.@-]+)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Secrets:
    """Every secret value seen while loading, so log output can redact them."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, value: str) -> str:
        if value and len(value) >= 4:
            self.values.add(value)
        return value


@dataclass
class Context:
    """What a section parser needs besides its own table."""

    file: Path
    secrets: Secrets
    state_dir: Path
    timezone: ZoneInfo
    timezone_set: bool = False  # [bridge] timezone given (else UTC, said out loud)
    warnings: list[str] = field(default_factory=list)


_MISSING = object()


class Table:
    """A TOML table with typed getters whose errors name the full key path."""

    def __init__(self, data: dict[builtins.str, Any], path: builtins.str, ctx: Context) -> None:
        self.data = data
        self.path = path
        self.ctx = ctx
        self._used: set[builtins.str] = set()

    def key(self, name: builtins.str) -> builtins.str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: builtins.str, message: builtins.str) -> ConfigError:
        return ConfigError(self.ctx.file, self.key(name), message)

    def _raw(self, name: builtins.str, default: Any) -> Any:
        self._used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "is required but missing")
            return default
        return self.data[name]

    def _expand(self, name: builtins.str, value: builtins.str, secret: builtins.bool) -> builtins.str:
        def env(match: re.Match[builtins.str]) -> builtins.str:
            var = match.group(1)
            if var not in os.environ:
                raise self.error(name, f"refers to ${{{var}}} but that environment variable is not set")
            return os.environ[var]

        def cred(match: re.Match[builtins.str]) -> builtins.str:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise self.error(
                    name,
                    f"refers to ${{credential:{match.group(1)}}} but $CREDENTIALS_DIRECTORY is not set "
                    "(use LoadCredential= in the systemd unit)",
                )
            path = Path(directory) / match.group(1)
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise self.error(name, f"cannot read credential {path}: {exc.strerror}") from None

        expanded = _CRED_REF.sub(cred, _ENV_REF.sub(env, value))
        if secret or expanded != value:
            # Anything pulled from the environment or a credential is treated as secret.
            self.ctx.secrets.add(expanded)
        return expanded

    def str(
        self,
        name: builtins.str,
        default: Any = _MISSING,
        *,
        secret: builtins.bool = False,
        choices: tuple[builtins.str, ...] | None = None,
    ) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {type(value).__name__}")
        value = self._expand(name, value, secret)
        if choices is not None and value not in choices:
            raise self.error(name, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def name(self, name: builtins.str = "name") -> builtins.str:
        value: builtins.str = self.str(name)
        if not _NAME.match(value):
            raise self.error(name, f"{value!r} is not a valid name (letters, digits, _ . -; up to 64)")
        return value

    def int(
        self,
        name: builtins.str,
        default: Any = _MISSING,
        *,
        min: builtins.int | None = None,
        max: builtins.int | None = None,
    ) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"must be at least {min}, got {value}")
        if max is not None and value > max:
            raise self.error(name, f"must be at most {max}, got {value}")
        return value

    def float(
        self,
        name: builtins.str,
        default: Any = _MISSING,
        *,
        min: builtins.float | None = None,
        max: builtins.float | None = None,
    ) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, got {value!r}")
        if min is not None and value < min:
            raise self.error(name, f"must be at least {min}, got {value}")
        if max is not None and value > max:
            raise self.error(name, f"must be at most {max}, got {value}")
        return float(value)

    def bool(self, name: builtins.str, default: Any = _MISSING) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def list(self, name: builtins.str, default: Any = _MISSING) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, got {type(value).__name__}")
        return value

    def str_list(self, name: builtins.str, default: Any = _MISSING) -> Any:
        value = self.list(name, default)
        if value is default and default is not _MISSING:
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{i}]", f"must be a string, got {item!r}")
        return [self._expand(name, item, False) for item in value]

    def str_map(self, name: builtins.str, default: Any = _MISSING, *, secret: builtins.bool = False) -> Any:
        """A table of string values (e.g. extra HTTP headers)."""
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table of strings, got {type(value).__name__}")
        out: dict[builtins.str, builtins.str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                raise self.error(f"{name}.{k}", f"must be a string, got {v!r}")
            out[k] = self._expand(f"{name}.{k}", v, secret)
        return out

    def table(self, name: builtins.str, default_empty: builtins.bool = True) -> Table:
        value = self._raw(name, {} if default_empty else _MISSING)
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table, got {type(value).__name__}")
        return Table(value, self.key(name), self.ctx)

    def tables(self, name: builtins.str) -> builtins.list[Table]:
        value = self._raw(name, [])
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, "must be an array of tables ([[...]])")
        return [Table(v, f"{self.key(name)}[{i}]", self.ctx) for i, v in enumerate(value)]

    def path_value(self, name: builtins.str, default: Any = _MISSING) -> Any:
        value = self.str(name, default)
        if value is default and default is not _MISSING:
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (self.ctx.file.parent / path).resolve() if self.ctx.file.exists() else path.resolve()
        return path

    def timezone(self, name: builtins.str = "timezone") -> ZoneInfo:
        value = self.str(name, None)
        if value is None:
            return self.ctx.timezone
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.error(
                name, f"unknown time zone {value!r} (use an IANA name such as 'America/Chicago')"
            ) from None

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise self.error(
                unknown[0], "is not a known key here (check spelling; see config/bridge.example.toml)"
            )


@settings
class BridgeSettings:
    """``[bridge]``: process-wide settings."""

    state_dir: Path | None = setting(
        None, doc="where the outbox and quarantine live (default: $STATE_DIRECTORY or ./state)"
    )
    timezone: ZoneInfo | None = setting(
        None, doc="IANA zone that zone-less vendor times are read in (default: UTC, with a warning)"
    )
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), doc="log threshold")


@settings
class OutboxSettings:
    """``[outbox]``: the durable SQLite outbox."""

    commit_interval: float = setting(
        0.02, min=0.0, max=1.0, doc="unused, kept for older configs: a commit starts as soon as the last ends"
    )
    commit_batch: int = setting(1000, min=1, max=100_000, doc="most events in one commit")
    synchronous: str = setting("full", choices=("full", "normal"), doc="SQLite synchronous mode")
    retention: float = setting(7 * 86400.0, min=0.0, doc="keep delivered events this long (s)")
    prune_interval: float = setting(300.0, min=1.0, doc="how often old rows are pruned (s)")
    max_pending_age: float = setting(
        14 * 86400.0, min=0.0, doc="dead-letter a delivery still pending this long (s; 0: never)"
    )
    dead_retention: float = setting(
        30 * 86400.0, min=0.0, doc="delete dead letters this long after (s; 0: never)"
    )
    max_bytes: int = setting(
        10_000_000_000,
        min=0,
        doc="outbox size limit (bytes of database in use); when full, stop reading sources (0: none)",
    )


_LOOPBACK_HOSTS = ("localhost", "::1", "ip6-localhost")


@settings
class AdminSettings:
    """``[admin]``: the health, metrics and console listener."""

    enabled: bool = setting(True, doc="serve /healthz, /readyz, /metrics and the console at /")
    listen: str = setting("127.0.0.1:9108", doc="host:port to listen on (keep it on loopback)")
    token: str | None = setting(
        None,
        secret=True,
        doc="bearer token: required for /metrics and the console's data, enables the console's actions",
    )
    refresh_interval: float = setting(
        5.0, min=0.5, max=300.0, doc="how often outbox counts and the write probe are refreshed (s)"
    )

    def validate(self, v: Validator) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise v.error("listen", f'must be host:port such as "127.0.0.1:9108", got {self.listen!r}')
        if self.token is not None and len(self.token) < 16:
            raise v.error("token", "is too short: use at least 16 random characters (openssl rand -hex 16)")
        host = host.strip("[]")
        if host.startswith("127.") or host in _LOOPBACK_HOSTS:
            return
        exposure = (
            "anyone who can reach it can read /readyz"
            if self.token
            else "anyone who can reach it can read metrics, events and dead letters; set [admin] token"
        )
        v.warn("listen", f"{self.listen} is not a loopback address: {exposure}, and firewall the port")


@dataclass
class BridgeConfig:
    file: Path
    state_dir: Path
    timezone: ZoneInfo
    secrets: Secrets
    sources: list[Configured] = field(default_factory=list)
    sinks: list[Configured] = field(default_factory=list)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    quarantine: QuarantineSettings = field(default_factory=QuarantineSettings)
    log_level: str = "info"
    warnings: list[str] = field(default_factory=list)  # said at start and by check-config


def _components(root: Table, group: str) -> list[Configured]:
    built: list[Configured] = []
    seen: set[str] = set()
    section = root.table(group)
    single = group[:-1]
    for kind in sorted(section.data):
        try:
            registration = registry.source_kind(kind) if group == "sources" else registry.sink_kind(kind)
        except registry.UnknownKind as exc:
            raise ConfigError(section.ctx.file, f"{group}.{kind}", str(exc)) from None
        for table in section.tables(kind):
            # What a reload compares to decide whether this component changed.
            fingerprint = json.dumps([kind, table.data], sort_keys=True, default=str)
            values = load_settings(registration.settings, table)
            component = registration.build(values)
            name = component.name
            if name in seen:
                raise table.error("name", f"{name!r} is used twice in [{group}]; names must be unique")
            seen.add(name)
            built.append(Configured(kind, name, fingerprint, values, component))
    section.check_unknown()
    if not built:
        raise ConfigError(
            root.ctx.file, group, f"no {single} is configured; add at least one [[{group}.<kind>]] table"
        )
    return built


def parse(data: dict[str, Any], file: Path) -> BridgeConfig:
    """Validate a parsed TOML document and build every source and sink it declares."""
    secrets = Secrets()
    boot = Context(file=file, secrets=secrets, state_dir=Path("."), timezone=ZoneInfo("UTC"))
    root = Table(data, "", boot)
    bridge = load_settings(BridgeSettings, root.table("bridge"))
    if bridge.timezone is not None:
        boot.timezone = bridge.timezone
    boot.timezone_set = bridge.timezone is not None
    state_env = os.environ.get("STATE_DIRECTORY")  # systemd StateDirectory=
    state_default = state_env.split(":")[0] if state_env else "./state"
    # Relative paths in the file are relative to the file; the default is relative to
    # the working directory (or systemd's StateDirectory=).
    boot.state_dir = bridge.state_dir or Path(state_default).resolve()
    outbox = load_settings(OutboxSettings, root.table("outbox"))
    admin = load_settings(AdminSettings, root.table("admin"))
    quarantine = load_settings(QuarantineSettings, root.table("quarantine"))
    sources = _components(root, "sources")
    sinks = _components(root, "sinks")
    root.check_unknown()
    return BridgeConfig(
        file=file,
        state_dir=boot.state_dir,
        timezone=boot.timezone,
        secrets=secrets,
        sources=sources,
        sinks=sinks,
        outbox=outbox,
        admin=admin,
        quarantine=quarantine,
        log_level=bridge.log_level,
        warnings=boot.warnings,
    )


def load(path: str | Path) -> BridgeConfig:
    """Read and validate a config file; every problem is a :class:`ConfigError`."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "", f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", f"invalid TOML: {exc}") from None
    return parse(data, file.resolve())

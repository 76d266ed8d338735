"""Configuration: one TOML file, validated at start, errors that name file, key and fix.

Sources and sinks parse their own tables (``[[sources.<kind>]]``, ``[[sinks.<kind>]]``)
through :class:`Table`, so adding a vendor or sink never touches this module: the kind
name is the module name under ``bridge.sources`` / ``bridge.sinks``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CRED_REF = re.compile(r"\$\{credential:([A-Za-z0-9_.@-]+)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(Exception):
    """A configuration problem: where (file and key) and what to do about it."""

    def __init__(self, file: str | Path, key: str, message: str) -> None:
        self.file = str(file)
        self.key = key
        self.message = message
        super().__init__(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")


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


_MISSING = object()


class Table:
    """A TOML table with typed getters whose errors name the full key path."""

    def __init__(self, data: dict[str, Any], path: str, ctx: Context) -> None:
        self.data = data
        self.path = path
        self.ctx = ctx
        self._used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(self.ctx.file, self.key(name), message)

    def _raw(self, name: str, default: Any) -> Any:
        self._used.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "is required but missing")
            return default
        return self.data[name]

    def _expand(self, name: str, value: str, secret: bool) -> str:
        def env(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                raise self.error(name, f"refers to ${{{var}}} but that environment variable is not set")
            return os.environ[var]

        def cred(match: re.Match[str]) -> str:
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
        name: str,
        default: Any = _MISSING,
        *,
        secret: bool = False,
        choices: tuple[str, ...] | None = None,
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

    def name(self, name: str = "name") -> str:
        value = self.str(name)
        if not _NAME.match(value):
            raise self.error(name, f"{value!r} is not a valid name (letters, digits, _ . -; up to 64)")
        return value

    def int(
        self, name: str, default: Any = _MISSING, *, min: int | None = None, max: int | None = None
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
        self, name: str, default: Any = _MISSING, *, min: float | None = None, max: float | None = None
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

    def bool(self, name: str, default: Any = _MISSING) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def list(self, name: str, default: Any = _MISSING) -> Any:
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, got {type(value).__name__}")
        return value

    def str_list(self, name: str, default: Any = _MISSING) -> Any:
        value = self.list(name, default)
        if value is default and default is not _MISSING:
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"{name}[{i}]", f"must be a string, got {item!r}")
        return [self._expand(name, item, False) for item in value]

    def str_map(self, name: str, default: Any = _MISSING, *, secret: bool = False) -> Any:
        """A table of string values (e.g. extra HTTP headers)."""
        value = self._raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table of strings, got {type(value).__name__}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                raise self.error(f"{name}.{k}", f"must be a string, got {v!r}")
            out[k] = self._expand(f"{name}.{k}", v, secret)
        return out

    def table(self, name: str, default_empty: bool = True) -> Table:
        value = self._raw(name, {} if default_empty else _MISSING)
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table, got {type(value).__name__}")
        return Table(value, self.key(name), self.ctx)

    def tables(self, name: str) -> list[Table]:
        value = self._raw(name, [])
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, "must be an array of tables ([[...]])")
        return [Table(v, f"{self.key(name)}[{i}]", self.ctx) for i, v in enumerate(value)]

    def path_value(self, name: str, default: Any = _MISSING) -> Any:
        value = self.str(name, default)
        if value is default and default is not _MISSING:
            return value
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (self.ctx.file.parent / path).resolve() if self.ctx.file.exists() else path.resolve()
        return path

    def timezone(self, name: str = "timezone") -> ZoneInfo:
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


@dataclass
class BridgeConfig:
    file: Path
    state_dir: Path
    timezone: ZoneInfo
    secrets: Secrets
    sources: list[Any] = field(default_factory=list)
    sinks: list[Any] = field(default_factory=list)
    outbox: dict[str, Any] = field(default_factory=dict)
    admin: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"


def _component_module(kind_group: str, kind: str, table: Table) -> Any:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise table.error("", f"{kind!r} is not a known {kind_group[:-1]} kind")
    try:
        return importlib.import_module(f"bridge.{kind_group}.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith(f"bridge.{kind_group}.{kind}"):
            raise ConfigError(
                table.ctx.file, f"{kind_group}.{kind}", f"there is no {kind_group[:-1]} kind called {kind!r}"
            ) from None
        raise


def _components(root: Table, group: str) -> list[Any]:
    built: list[Any] = []
    seen: set[str] = set()
    section = root.table(group)
    for kind in sorted(section.data):
        module = _component_module(group, kind, section)
        for table in section.tables(kind):
            component = module.from_config(table)
            table.check_unknown()
            # What a reload compares to decide whether this component changed.
            component.config_fingerprint = json.dumps([kind, table.data], sort_keys=True, default=str)
            if component.name in seen:
                raise table.error(
                    "name", f"{component.name!r} is used twice in [{group}]; names must be unique"
                )
            seen.add(component.name)
            built.append(component)
    section.check_unknown()
    return built


def parse(data: dict[str, Any], file: Path) -> BridgeConfig:
    """Validate a parsed TOML document and build every source and sink it declares."""
    secrets = Secrets()
    boot = Context(file=file, secrets=secrets, state_dir=Path("."), timezone=ZoneInfo("UTC"))
    root = Table(data, "", boot)
    bridge = root.table("bridge")
    boot.timezone = bridge.timezone("timezone")
    state_env = os.environ.get("STATE_DIRECTORY")  # systemd StateDirectory=
    state_default = state_env.split(":")[0] if state_env else "./state"
    # Relative paths in the file are relative to the file; the default is relative to
    # the working directory (or systemd's StateDirectory=).
    boot.state_dir = bridge.path_value("state_dir", None) or Path(state_default).resolve()
    log_level = bridge.str("log_level", "info", choices=("debug", "info", "warning", "error"))
    bridge.check_unknown()

    outbox = root.table("outbox")
    outbox_cfg = {
        "commit_interval": outbox.float("commit_interval", 0.02, min=0.0, max=1.0),
        "commit_batch": outbox.int("commit_batch", 1000, min=1, max=100_000),
        "synchronous": outbox.str("synchronous", "full", choices=("full", "normal")),
        "retention": outbox.float("retention", 7 * 86400.0, min=0.0),
        "prune_interval": outbox.float("prune_interval", 300.0, min=1.0),
    }
    outbox.check_unknown()

    admin = root.table("admin")
    admin_cfg = {
        "enabled": admin.bool("enabled", True),
        "listen": admin.str("listen", "127.0.0.1:9108"),
    }
    admin.check_unknown()

    sources = _components(root, "sources")
    sinks = _components(root, "sinks")
    if not sources:
        raise ConfigError(
            file, "sources", "no source is configured; add at least one [[sources.<kind>]] table"
        )
    if not sinks:
        raise ConfigError(file, "sinks", "no sink is configured; add at least one [[sinks.<kind>]] table")
    root.check_unknown()
    return BridgeConfig(
        file=file,
        state_dir=boot.state_dir,
        timezone=boot.timezone,
        secrets=secrets,
        sources=sources,
        sinks=sinks,
        outbox=outbox_cfg,
        admin=admin_cfg,
        log_level=log_level,
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

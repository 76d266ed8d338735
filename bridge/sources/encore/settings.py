"""Settings of ``[[sources.encore]]`` (documented key by key in config/encore-only.example.toml)."""

from __future__ import annotations

from urllib.parse import urlsplit

from bridge.errors import ConfigError
from bridge.netutil import redact_url
from bridge.settings import Validator, setting, settings
from bridge.sources.encore.soap import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_NAMESPACE, DEFAULT_SOAP_ACTION
from bridge.tls import TlsSettings


@settings
class PortSettings:
    """One ``[[sources.encore.ports]]`` table: a unit/port known in advance."""

    unit: str | int = setting(doc="recording unit (a number or a string, as the API takes it)")
    port: str | int = setting(doc="recording port on that unit")

    def validate(self, v: Validator) -> None:
        for key in ("unit", "port"):
            if not str(getattr(self, key)).strip():
                raise v.error(key, "must not be empty")

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.unit).strip(), str(self.port).strip())


@settings
class EncoreSettings(TlsSettings):
    name: str = setting(doc="unique name of this source (logs, metrics, CloudEvent source)")
    url: str = setting(doc="the Web API web service address, http(s)://host/WebAPI/ECAPI.svc")
    extensions: tuple[str, ...] = setting((), doc="phone extensions, resolved with InitStation")
    users: tuple[str, ...] = setting((), doc="Windows login IDs, resolved with InitUser")
    machine: str | None = setting(None, doc="machine name sent with InitUser (default: the login ID)")
    resolve_interval: float = setting(300.0, min=1.0, doc="seconds between re-resolutions")
    ports: tuple[PortSettings, ...] = setting((), doc="unit/port pairs polled directly")
    interval: float = setting(1.0, min=0.05, doc="seconds for one sweep over all ports")
    max_in_flight: int = setting(
        1, min=1, max=64, aliases=("max_inflight", "max_concurrency"), doc="requests at once per server"
    )
    api_version: str = setting("auto", choices=("auto", "7.1", "7.0"), doc="auto, 7.1 or 7.0")
    timeout: float = setting(10.0, min=0.1, doc="total deadline of one request, seconds")
    reconnect_min: float = setting(
        0.5, min=0.01, aliases=("backoff_base", "retry_min"), doc="first backoff after a failure, seconds"
    )
    reconnect_max: float = setting(
        30.0, min=0.1, aliases=("backoff_cap", "retry_max"), doc="longest backoff, seconds"
    )
    misconfigured_recheck: float = setting(300.0, min=1.0, doc="seconds before asking a 606/611 port again")
    infer_transitions: bool = setting(True, doc="emit changes revealed only by a younger stateDuration")
    duration_tolerance: float = setting(2.0, min=1.0, doc="slack when comparing stateDuration, seconds")
    recording_urls: bool = setting(True, doc="ask GetURL for each recording's link (data.recording_url)")
    namespace: str = setting(DEFAULT_NAMESPACE, doc="the service's target namespace (see <url>?wsdl)")
    soap_action: str = setting(DEFAULT_SOAP_ACTION, doc="SOAPAction; placeholders {namespace}, {operation}")
    max_response_bytes: int = setting(DEFAULT_MAX_RESPONSE_BYTES, min=4096, doc="larger answers are refused")
    username: str | None = setting(None, doc="HTTP Basic user name, if the service requires it")
    password: str | None = setting(None, secret=True, doc="HTTP Basic password (goes with username)")

    def validate(self, v: Validator) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise v.error(
                "url", f"must be an http:// or https:// URL of ECAPI.svc, got {redact_url(self.url)!r}"
            )
        if parts.password:  # basic credentials in the URL: redact them like any secret
            v.table.ctx.secrets.add(parts.password)
        try:
            self.soap_action.format(namespace="", operation="")
        except (KeyError, IndexError, ValueError):
            raise v.error(
                "soap_action", "may only use the placeholders {namespace} and {operation}"
            ) from None
        if (self.username is None) != (self.password is None):
            raise v.error("password" if self.username else "username", "username and password go together")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise v.error("ca_file", f"{self.ca_file} is not a readable file")
        if self.reconnect_max < self.reconnect_min:
            raise v.error("reconnect_max", f"must be at least reconnect_min ({self.reconnect_min})")
        if not (self.ports or self.extensions or self.users):
            raise ConfigError(
                v.table.ctx.file,
                v.table.path,
                "nothing to poll: set extensions, users and/or [[…ports]] tables with unit and port",
            )
        if not self.verify_tls:
            v.warn("verify_tls", "false: any certificate is accepted (keep it on outside a lab)")

    @property
    def auth(self) -> tuple[str, str] | None:
        return (
            (self.username, self.password)
            if self.username is not None and self.password is not None
            else None
        )

    @property
    def port_keys(self) -> list[tuple[str, str]]:
        return [p.key for p in self.ports]

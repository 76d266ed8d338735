"""The process exit statuses of ``event-bridge`` (the README's table), in one place.

Scripts and systemd (``RestartPreventExitStatus=``) tell the causes apart by them.
"""

from __future__ import annotations

from bridge.errors import ConfigError

OK = 0
UNCLEAN = 1  # stopped, but not cleanly (a component kept failing during shutdown)
CONFIG = 2  # the configuration is wrong (file, key and fix on the line)
LISTEN = 3  # the admin listener cannot bind (port in use, no such address)
STATE_DIR = 4  # the state directory / outbox cannot be opened or written
TLS = 5  # a TLS file (ca_file, cert_file, key_file) cannot be read or parsed
INTERRUPTED = 130  # Ctrl-C before the bridge was running

TLS_KEYS = frozenset({"ca_file", "cert_file", "key_file"})


def for_config_error(exc: ConfigError) -> tuple[int, str]:
    """Exit status and line prefix for a configuration error (TLS files get their own)."""
    if exc.key in TLS_KEYS:
        return TLS, "TLS file error"
    return CONFIG, "configuration error"

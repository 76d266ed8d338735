"""The admin listener: /healthz, /readyz, /metrics and the operators' console at ``/``.

Modules: :mod:`.cache` (what is costly, refreshed in the background), :mod:`.app`
(HTTP routing, bearer token, CSRF), :mod:`.console` (the console's data and actions),
:mod:`.status` (``event-bridge status``), ``static/`` (the page: plain files, no
external assets).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.admin.app import AdminApp, readiness, run_admin
from bridge.admin.cache import AdminCache
from bridge.metrics import Metrics

if TYPE_CHECKING:
    from bridge.service import Bridge

__all__ = ["AdminApp", "AdminCache", "attach", "readiness"]


def attach(bridge: Bridge, args: Any = None) -> Metrics:
    """Wire metrics into the pipeline and, when enabled, bind the admin listener at start.

    The listener is a *startup listener* of the bridge: it is bound before the sinks and
    sources start and before READY=1, and a failure to bind stops the start with one line.
    """
    metrics = Metrics(bridge)
    bridge.metrics = metrics
    if bridge.config.admin.enabled:
        admin = bridge.config.admin
        cache = AdminCache(bridge, admin.refresh_interval)
        app = AdminApp(bridge, metrics, cache, admin.token)
        bridge.admin = app

        async def listener(b: Bridge, *, task_status: Any) -> None:
            await run_admin(b, app, task_status=task_status)

        bridge.listeners.append(listener)
    return metrics

"""``bench/run --repeat N``: every figure is the median of N runs, with its spread.

A scenario's result is a nested dict; numbers at the same path are combined across the
runs (median), and ``spread[path] = [min, max]``. Non-numbers come from the first run.
"""

from __future__ import annotations

import statistics
from typing import Any

HEADLINE = ("per_s", "_ms", "ratio", "us_per", "bytes_per", "rss_mb", "sweep_s")


def _leaves(value: Any, path: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(_leaves(item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[path] = float(value)
    return out


def _median_into(first: Any, runs: list[Any]) -> Any:
    if isinstance(first, dict):
        return {
            k: _median_into(v, [r.get(k) if isinstance(r, dict) else None for r in runs])
            for k, v in first.items()
        }
    if isinstance(first, int | float) and not isinstance(first, bool):
        values = [r for r in runs if isinstance(r, int | float) and not isinstance(r, bool)]
        m = statistics.median(values)
        return round(m) if isinstance(first, int) else round(m, 3)
    return first


def combine(runs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """(median result, spread of the headline figures) of one scenario's runs."""
    median = _median_into(runs[0], runs)
    per_run = [_leaves(r) for r in runs]
    spread: dict[str, list[float]] = {}
    for path in per_run[0]:
        if any(tag in path for tag in HEADLINE):
            values = [p[path] for p in per_run if path in p]
            spread[path] = [min(values), max(values)]
    return median, spread


def spread_lines(spread: dict[str, dict[str, list[float]]], n: int) -> str:
    lines = [f"Spread over {n} runs (min … max; the table shows medians):"]
    for scenario, paths in spread.items():
        for path, (lo, hi) in paths.items():
            if lo != hi:
                lines.append(f"  {scenario}.{path}: {lo:g} … {hi:g} ({(hi - lo) / max(abs(hi), 1e-9):.0%})")
    return "\n".join(lines)

"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: where the time goes.

    python bench/profile_summary.py prof.txt [--top 25] [--idle]

Prints, per function (file:line collapsed to function), the share of samples in which
it appears anywhere on the stack (inclusive) and at the top (self). Samples whose
leaf is an idle wait (epoll, lock acquire, select) are dropped unless ``--idle``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

IDLE = re.compile(r"\b(epoll|poll|select|acquire|wait|_sleep|get_events|handle_io)\b")


def frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``."""
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{func} ({short})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--idle", action="store_true", help="keep samples waiting in epoll/locks")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    with open(args.file) as f:
        lines = f.readlines()
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        frames = [frame_name(f) for f in stack.split(";")]
        if not args.idle and IDLE.search(frames[-1].split(" ")[0]):
            continue
        count = int(count_text)
        total += count
        for name in set(frames):
            inclusive[name] += count
        leaf[frames[-1]] += count
    print(f"{total} busy samples")
    print("inclusive:")
    for name, n in inclusive.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")
    print("self:")
    for name, n in leaf.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()

"""Vendor simulators built from the vendor docs.

Each module ``bridge.simulators.<vendor>`` provides ``add_arguments(parser)`` and
``async def main(args)`` so that ``event-bridge simulate <vendor>`` finds it by name,
and a simulator class that tests drive in-process over real loopback sockets.
"""

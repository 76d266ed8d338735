"""The one hardened lxml parser configuration, for every XML a vendor sends.

No DTD is loaded, no entity resolved, nothing fetched from the network, no huge trees:
billion-laughs and XXE documents fail to parse instead of expanding or reaching out.
"""

from __future__ import annotations

from lxml import etree

__all__ = ["hardened_parser"]


def hardened_parser(*, recover: bool = False) -> etree.XMLParser:
    """A fresh parser (lxml parsers are not thread-safe to share across threads).

    ``recover=True`` lets lxml repair broken markup (an unescaped ``&`` or ``<`` in a
    value); it never turns entity resolution or DTD loading on.
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )

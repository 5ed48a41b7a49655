"""Help texts of ``dicom-host`` in plain text.

The subcommands take their descriptions from their modules' docstrings, which are written in reST for
the source reader (````literal````, ``:mod:`name```` roles). :func:`make_plain` rewrites a parser tree's
texts once, so ``--help`` shows ``dicom-host run`` rather than ````dicom-host run````.
"""
from __future__ import annotations

import argparse
import re
from typing import Optional

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`(~?)([^`<]+?)\s*(?:<[^`]*>)?`")
"""``:func:`name```, ``:class:`~pkg.Name``` (shown as ``Name``), ``:ref:`text <target>``` (``text``)."""
_LITERAL = re.compile(r"``(.+?)``", re.S)


def plain(text: Optional[str]) -> Optional[str]:
    """``text`` without reST inline markup (``None`` stays ``None``)."""
    if text is None:
        return None

    def role(match: re.Match) -> str:
        return match[2].rsplit(".", 1)[-1] if match[1] else match[2]

    return _LITERAL.sub(r"\1", _ROLE.sub(role, text))


def make_plain(parser: argparse.ArgumentParser) -> None:
    """Rewrite the description, epilog and option help of ``parser`` and of its subcommands' parsers."""
    parser.description, parser.epilog = plain(parser.description), plain(parser.epilog)
    for action in parser._actions:
        if action.help not in (None, argparse.SUPPRESS):
            action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain(choice.help)
            for subparser in set(action.choices.values()):
                make_plain(subparser)

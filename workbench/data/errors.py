"""The one error type of :mod:`workbench.data`."""

from __future__ import annotations

import re
from collections.abc import Iterable

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


class DataError(ValueError):
    """A dataset, file or option is wrong; the message is one line naming it and what was expected.

    Line breaks in the message (for example from a wrapped library error) are folded into
    ``"; "`` so that the message always stays on one line.
    """

    def __init__(self, message: object = "") -> None:
        super().__init__(_LINE_BREAKS.sub("; ", str(message).strip()))


def known_names(known: Iterable[str]) -> str:
    """Return ``"a, b, c"``: the sorted known names, for the end of an error message."""
    return ", ".join(sorted(known))

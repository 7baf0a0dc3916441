"""The one error type of :mod:`workbench.data`."""

from __future__ import annotations

import re
from collections.abc import Iterable

_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


class DataError(ValueError):
    """A dataset, file or option is wrong; the message is one line naming it and what was expected.

    Line breaks in the message (for example from a wrapped library error) are folded into
    ``"; "`` so that the message always stays on one line, and characters that cannot be written
    as UTF-8 (the undecodable bytes of a file or folder name, kept by Python as lone surrogates)
    are shown as ``\\udcXX`` escapes, so printing the message never fails.
    """

    def __init__(self, message: object = "") -> None:
        text = _LINE_BREAKS.sub("; ", str(message).strip())
        super().__init__(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def known_names(known: Iterable[str]) -> str:
    """Return ``"a, b, c"``: the sorted known names, for the end of an error message."""
    return ", ".join(sorted(known))

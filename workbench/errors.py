"""One way to turn an exception into the one-line message every face shows.

The library raises errors whose first line says what was wrong (the field or file, the value and
what was expected). Every face — the CLI's ``error: ...``, the app's red line, a panel's status,
a job's recorded error — shows that first line and nothing else, through :func:`one_line`.
"""

from __future__ import annotations

_LIMIT = 400


def one_line(err: BaseException | str, *, limit: int = _LIMIT, typed: bool = False) -> str:
    """The first line of an error's message, at most ``limit`` characters, never a traceback.

    Args:
        err: an exception or a message.
        limit: the longest line returned (a cut line ends with ``...``).
        typed: prefix the exception's type name (``KeyError: 'x'``), for errors that are not the
            library's one-line input errors (a bug's message means little without its type).

    Returns:
        The first non-empty line of the message; the type name alone when the message is empty;
        ``missing 'x'`` for a bare ``KeyError('x')``.
    """
    if isinstance(err, str):
        text = err.strip()
        name = "error"
    else:
        text = str(err).strip()
        name = type(err).__name__
        if isinstance(err, KeyError) and text.startswith("'") and not typed:
            text = f"missing {text}"
    first = text.splitlines()[0].strip() if text else ""
    if not first:
        first = name
    elif typed and not isinstance(err, str):
        first = f"{name}: {first}"
    return first if len(first) <= limit else first[: limit - 3] + "..."


__all__ = ["one_line"]

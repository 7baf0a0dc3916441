"""Landscape objectives chosen by name, as the faces offer them.

:func:`landscape_objectives` turns the names a user picked (``cross_entropy``, ``kd``, ``agreement``,
``accuracy``) into :class:`workbench.analysis.landscape.Objective` objects, the ``kd`` objective at a
given temperature (a run's own, :func:`workbench.runs.inspect.kd_temperature`), ready for
``landscape_1d``/``landscape_2d``/``interpolate`` and the Hessian estimates.
"""

from __future__ import annotations

from collections.abc import Sequence

from workbench.analysis._common import AnalysisError
from workbench.analysis.landscape import Objective, builtin_objectives, kd


def landscape_objectives(names: Sequence[str], *, temperature: float | None = None) -> dict[str, Objective]:
    """The objectives named ``names``, in that order, keyed by name.

    Args:
        names: names of :func:`workbench.analysis.landscape.builtin_objectives` (a single string is
            one name).
        temperature: the softmax temperature of ``kd`` (Hinton et al. 2015); ``None`` keeps the
            built-in ``kd`` (T=4).

    Returns:
        ``{name: Objective}``.

    Raises:
        AnalysisError: an unknown name (one line listing the known ones), no name at all, or a
            temperature that is not a positive number.
    """
    known = builtin_objectives()
    chosen = [names] if isinstance(names, str) else list(names)
    if not chosen:
        raise AnalysisError(f"objective: expected at least one of {', '.join(known)}, got none")
    out: dict[str, Objective] = {}
    for name in chosen:
        if name not in known:
            raise AnalysisError(f"objective: unknown {name!r}; known: {', '.join(known)}")
        out[name] = kd(temperature) if name == "kd" and temperature is not None else known[name]
    return out


__all__ = ["landscape_objectives"]

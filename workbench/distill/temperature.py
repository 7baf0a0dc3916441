"""The one reading of a run config's distillation temperature, for every face and the doctor."""

from __future__ import annotations

from typing import Any

from workbench.distill.base import parse_params


def distillation_temperature(config: Any) -> float | None:
    """The softmax temperature a run config distils at (Hinton et al. 2015: soft targets
    ``softmax(z / T)``).

    Args:
        config: a :class:`workbench.config.RunConfig` (anything with ``distill.methods`` entries of
            ``name``, ``weight`` and ``params``).

    Returns:
        The ``temperature`` of its ``kd`` term when it has a weighted one, else of the first method
        with a positive weight that has one (``dkd``, ``dist``, ...), as that method parses its
        parameters (the configured value, else the method's default); ``None`` when no weighted
        method has a temperature (a scratch student, ``fitnet``).
    """
    weighted = [spec for spec in config.distill.methods if spec.weight > 0]
    for spec in sorted(weighted, key=lambda s: s.name != "kd"):  # the kd term first, then in order
        value = getattr(parse_params(spec.name, spec.params), "temperature", None)
        if value is not None:
            return float(value)
    return None


__all__ = ["distillation_temperature"]

"""Distillation methods: one interface (:class:`Method`), a registry, pure loss kernels."""

from workbench.distill import chains as _chains  # noqa: F401  (registers the chain methods)
from workbench.distill import features as _features  # noqa: F401  (registers the feature methods)
from workbench.distill import logits as _logits  # noqa: F401  (registers the logit methods)
from workbench.distill import online as _online  # noqa: F401  (registers the online methods)
from workbench.distill import relations as _relations  # noqa: F401  (registers the relational methods)
from workbench.distill import weighting as _weighting  # noqa: F401  (registers the sample-weighting methods)
from workbench.distill.base import (
    Method,
    MethodContext,
    MethodError,
    MethodParams,
    MethodStack,
    StepOutputs,
    create_method,
    describe_methods,
    get_method_class,
    list_methods,
    method_schema,
    parse_params,
    register_method,
)
from workbench.distill.temperature import distillation_temperature

__all__ = [
    "Method",
    "MethodContext",
    "MethodError",
    "MethodParams",
    "MethodStack",
    "StepOutputs",
    "create_method",
    "describe_methods",
    "distillation_temperature",
    "get_method_class",
    "list_methods",
    "method_schema",
    "parse_params",
    "register_method",
]

"""Class activation maps and pixel attributions, compared across a teacher, its student and others.

Where a model looks, batched over many images:

* :func:`compute_cams` — one model's maps for a batch of images with any registered method
  (:func:`list_cam_methods`; each method's parameters in :func:`cam_method_schema`): Grad-CAM,
  Grad-CAM++, HiResCAM, LayerCAM, Eigen-CAM, Score-CAM, plain CAM, and captum's Integrated
  Gradients, Saliency, SmoothGrad and Occlusion. Gradient CAMs take ONE forward and ONE backward
  pass per batch: the gradient of the sum of every sample's target score gives each sample's own
  gradient, because samples do not interact in eval mode. The forward records the autograd graph
  only from the CAM layer on and also gives the logits; the maps equal captum's ``LayerGradCam``.
* :func:`compare_cams` — teacher, student (and extra models') maps on the image grid, per-image
  Pearson and Spearman correlation and top-k% region IoU for every pair, averaged per class, and
  localization metrics when object masks or boxes are known.
* :func:`localization_metrics` — energy-based pointing game, GT-known localization and context
  reliance against object masks/boxes (the ``shapes`` dataset ships both).
* :func:`cam_layers` / :func:`check_cam_layer` — the layers a CAM can be drawn at (for a layer
  picker) and a one-line error, before any map is computed, when a model has no feature map.
* :func:`faithfulness` / :func:`cross_faithfulness` — deletion and insertion curves and their
  AUC (Petsiuk et al. 2018, RISE), including a student's map scored on the teacher and back.

Inputs are normalized float images ``(N, C, H, W)`` on any device; results are dataclasses of numpy
arrays with ``class_names``, ``params`` and ``to_dict()``. Every function computes on its own copy of
each model, so the caller's models (device, ``training`` flags, parameters, hooks) are never
changed; long calls take ``progress=`` and ``cancel=`` (:mod:`workbench.runtime`).

Modules: :mod:`.results` (dataclasses), :mod:`.registry` (methods and their parameter schemas),
:mod:`.compute`, :mod:`.layers`, :mod:`.compare`, :mod:`.localization`, :mod:`.faithfulness`;
:mod:`.kernels` and :mod:`.metrics` hold the batched formulas.
"""

from workbench.analysis.cam.compare import compare_cams, compare_maps
from workbench.analysis.cam.compute import TARGET_MODES, compute_cams
from workbench.analysis.cam.faithfulness import cross_faithfulness, curve_auc, faithfulness
from workbench.analysis.cam.layers import cam_layers, check_cam_layer
from workbench.analysis.cam.localization import localization_metrics
from workbench.analysis.cam.registry import (
    CAM_METHODS,
    CAMMethod,
    CAMParams,
    cam_method_schema,
    describe_cam_methods,
    get_cam_method,
    list_cam_methods,
    parse_cam_params,
    register_cam_method,
)
from workbench.analysis.cam.results import (
    CAMComparison,
    CAMResult,
    CrossFaithfulnessResult,
    FaithfulnessResult,
    LocalizationResult,
    MapAgreement,
)
from workbench.analysis.cam.selection import PICKS, select_images

__all__ = [
    "PICKS",
    "select_images",
    "CAM_METHODS",
    "TARGET_MODES",
    "CAMComparison",
    "CAMMethod",
    "CAMParams",
    "CAMResult",
    "CrossFaithfulnessResult",
    "FaithfulnessResult",
    "LocalizationResult",
    "MapAgreement",
    "cam_layers",
    "cam_method_schema",
    "check_cam_layer",
    "compare_cams",
    "compare_maps",
    "compute_cams",
    "cross_faithfulness",
    "curve_auc",
    "describe_cam_methods",
    "faithfulness",
    "get_cam_method",
    "list_cam_methods",
    "localization_metrics",
    "parse_cam_params",
    "register_cam_method",
]

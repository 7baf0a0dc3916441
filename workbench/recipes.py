"""CIFAR-scale recipes: the field's teacher-student pairs on 32x32x3 images with the authors'
published schedules, and the published CIFAR-100 top-1 accuracies to set a run's result beside.

A :class:`Recipe` is a pair (teacher model, student model) of the zoo on a dataset (``cifar100``,
the field's benchmark, or ``cifar10``). :meth:`Recipe.teacher_config` is the run config that
trains the teacher from labels; :meth:`Recipe.config` the one that trains the student from that
teacher (a ``run:ID`` of the teacher run, or a weights file the user brings) with a method, or
from labels alone (``method="none"``, the scratch baseline). Both are plain dicts a user can
submit (``workbench train ... --recipe NAME``, the job queue, a YAML file).

The schedule is the one of RepDistiller's ``train_student.py`` / ``train_teacher.py`` (Tian et
al., the CRD code) and of mdistiller's ``configs/cifar100/*.yaml`` (Zhao et al., the DKD code):
SGD with momentum 0.9 and weight decay 5e-4, learning rate 0.05 (0.01 for a MobileNet or
ShuffleNet student, the rule in ``train_student.py``), batch 64, 240 epochs, the rate x0.1 at
epochs 150, 180 and 210 (RepDistiller's ``adjust_learning_rate`` decays once the 1-based epoch
exceeds a milestone, which is the engine's ``step`` schedule with 0-based epochs ``>=`` it);
random 32x32 crops of the image padded by 4 pixels and horizontal flips (``dataset/cifar100.py``).
The objectives are the authors' scripts': KD is ``0.1 * CE + 0.9 * KD`` at T = 4
(``scripts/run_cifar_distill.sh``: ``-r 0.1 -a 0.9 -b 0``; mdistiller ``KD.LOSS``), DKD is
``CE + DKD`` with alpha 1, T 4, a 20-epoch warm-up and the pair's beta
(``configs/cifar100/dkd/<pair>.yaml``, else the default 8 of ``mdistiller/engine/cfg.py``), the
feature and relation methods ``CE + beta * loss`` with RepDistiller's ``-b``.

:func:`reference_for` gives the published rows that match a run config's pair, dataset and
method (:data:`REFERENCES`: CRD's Tables 1 and 2 as printed in the RepDistiller README, and the
KD and DKD rows of the mdistiller README), each with its source.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workbench.config import ConfigError, RunConfig, shown, validate_config

__all__ = [
    "METHOD_OBJECTIVES",
    "RECIPES",
    "REFERENCES",
    "SOURCES",
    "Objective",
    "Recipe",
    "RecipeError",
    "Reference",
    "Source",
    "compare_with_references",
    "get_recipe",
    "list_recipes",
    "method_key",
    "reference_for",
    "scaled_milestones",
]


class RecipeError(ValueError):
    """A recipe name or a recipe argument is wrong; the message is one line naming it."""


# ---- the published schedule ----------------------------------------------------------------------

#: RepDistiller train_student.py / train_teacher.py defaults and mdistiller's
#: configs/cifar100/*.yaml SOLVER sections (identical numbers in both)
EPOCHS = 240
MILESTONES = (150, 180, 210)
GAMMA = 0.1
BATCH_SIZE = 64
LR = 0.05
#: train_student.py: ``if opt.model_s in ['mobile_half', 'mobile_full', 'ShuffleV1', 'ShuffleV2']:
#: opt.learning_rate = 0.01`` (mdistiller configs/cifar100/dkd/vgg13_mv2.yaml: LR 0.01)
LR_SMALL = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
#: dataset/cifar100.py: RandomCrop(32, padding=4), RandomHorizontalFlip()
CROP_PADDING = 4
#: mdistiller DKD.WARMUP (epochs of the 240) and DKD.T, DKD.ALPHA, default DKD.BETA
DKD_WARMUP = 20.0
DKD_BETA = 8.0


@dataclass(frozen=True)
class Objective:
    """How a method enters the loss in the authors' scripts: ``ce_weight * CE + weight * method``
    with the method's ``params``; ``where`` names the script or config the numbers come from."""

    method: str
    ce_weight: float
    weight: float
    params: Mapping[str, Any]
    where: str


_RD = "RepDistiller scripts/run_cifar_distill.sh"
#: the methods a recipe trains with, each with the authors' objective. ``dkd``'s ``beta`` is the
#: recipe's own (:attr:`Recipe.dkd_beta`); ``none`` is the scratch student (cross-entropy alone).
METHOD_OBJECTIVES: dict[str, Objective] = {
    o.method: o
    for o in (
        Objective("none", 1.0, 0.0, {}, "RepDistiller train_teacher.py (cross-entropy)"),
        Objective("kd", 0.1, 0.9, {"temperature": 4.0}, f"{_RD}: -r 0.1 -a 0.9 -b 0, --kd_T 4"),
        Objective(
            "dkd",
            1.0,
            1.0,
            {"alpha": 1.0, "temperature": 4.0, "warmup": DKD_WARMUP},
            "mdistiller configs/cifar100/dkd/*.yaml over mdistiller/engine/cfg.py (DKD.*)",
        ),
        Objective("fitnet", 1.0, 1.0, {"beta": 100.0}, f"{_RD}: --distill hint -a 0 -b 100"),
        Objective("at", 1.0, 1.0, {"beta": 1000.0}, f"{_RD}: --distill attention -a 0 -b 1000"),
        Objective("sp", 1.0, 1.0, {"beta": 3000.0}, f"{_RD}: --distill similarity -a 0 -b 3000"),
        Objective("rkd", 1.0, 1.0, {"beta": 1.0}, f"{_RD}: --distill rkd -a 0 -b 1"),
        Objective("pkt", 1.0, 1.0, {"beta": 30000.0}, f"{_RD}: --distill pkt -a 0 -b 30000"),
        Objective("nst", 1.0, 1.0, {"beta": 50.0}, f"{_RD}: --distill nst -a 0 -b 50"),
        Objective("crd", 1.0, 1.0, {"beta": 0.8}, f"{_RD}: --distill crd -a 0 -b 0.8"),
    )
}


# ---- published accuracies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a published number comes from: the paper and the page that prints the table."""

    key: str
    citation: str
    url: str


SOURCES: dict[str, Source] = {
    "crd": Source(
        "crd",
        "Tian, Krishnan & Isola, Contrastive Representation Distillation, ICLR 2020, Tables 1 and 2",
        "https://github.com/HobbitLong/RepDistiller#benchmark-results-on-cifar-100",
    ),
    "dkd": Source(
        "dkd",
        "Zhao, Cui, Song, Qiu & Liang, Decoupled Knowledge Distillation, CVPR 2022, Tables 1 and 2",
        "https://github.com/megvii-research/mdistiller#main-benchmark-results",
    ),
}


@dataclass(frozen=True)
class Reference:
    """One published top-1 accuracy (percent) on ``dataset``'s test split: ``model`` trained by
    ``method`` (a workbench method name; ``none`` = from labels alone) from ``teacher`` (``None``
    for a model trained from labels), as printed by ``source`` (a key of :data:`SOURCES`) under the
    paper's name for the row, ``label``."""

    dataset: str
    teacher: str | None
    model: str
    method: str
    top1: float
    source: str
    label: str

    def to_dict(self) -> dict[str, Any]:
        """The row with its source's citation and URL."""
        src = SOURCES[self.source]
        return {
            "dataset": self.dataset,
            "teacher": self.teacher,
            "model": self.model,
            "method": self.method,
            "label": self.label,
            "top1": self.top1,
            "source": self.source,
            "citation": src.citation,
            "url": src.url,
        }


#: the rows of the tables by the paper's method name -> (workbench method name, the label shown); a model
#: trained from labels alone is "vanilla", the authors' word (RepDistiller save/models/*_vanilla,
#: mdistiller configs/cifar100/vanilla.yaml)
_ROWS = {
    "Teacher": ("none", "vanilla"),
    "Student": ("none", "vanilla"),
    "KD": ("kd", "KD"),
    "FitNet": ("fitnet", "FitNet"),
    "AT": ("at", "AT"),
    "SP": ("sp", "SP"),
    "CC": ("cc", "CC"),
    "VID": ("vid", "VID"),
    "RKD": ("rkd", "RKD"),
    "PKT": ("pkt", "PKT"),
    "AB": ("ab", "AB"),
    "FT": ("ft", "FT"),
    "FSP": ("fsp", "FSP"),
    "NST": ("nst", "NST"),
    "CRD": ("crd", "CRD"),
    "DKD": ("dkd", "DKD"),
}

#: RepDistiller README.md, "Benchmark Results on CIFAR-100" (= CRD paper, Table 1: teacher and student
#: of the same type), columns (teacher, student) in the README's order. Each list follows that order;
#: None marks a cell that is not a result (FSP for wrn_40_2 -> wrn_40_1 is printed as 0.00).
_CRD_PAIRS = (
    ("wrn_40_2", "wrn_16_2"),
    ("wrn_40_2", "wrn_40_1"),
    ("resnet56", "resnet20"),
    ("resnet110", "resnet20"),
    ("resnet110", "resnet32"),
    ("resnet32x4", "resnet8x4"),
    ("vgg13", "vgg8"),
)
_CRD_TABLE: dict[str, tuple[float | None, ...]] = {
    "Teacher": (75.61, 75.61, 72.34, 74.31, 74.31, 79.42, 74.64),
    "Student": (73.26, 71.98, 69.06, 69.06, 71.14, 72.50, 70.36),
    "KD": (74.92, 73.54, 70.66, 70.67, 73.08, 73.33, 72.98),
    "FitNet": (73.58, 72.24, 69.21, 68.99, 71.06, 73.50, 71.02),
    "AT": (74.08, 72.77, 70.55, 70.22, 72.31, 73.44, 71.43),
    "SP": (73.83, 72.43, 69.67, 70.04, 72.69, 72.94, 72.68),
    "CC": (73.56, 72.21, 69.63, 69.48, 71.48, 72.97, 70.71),
    "VID": (74.11, 73.30, 70.38, 70.16, 72.61, 73.09, 71.23),
    "RKD": (73.35, 72.22, 69.61, 69.25, 71.82, 71.90, 71.48),
    "PKT": (74.54, 73.45, 70.34, 70.25, 72.61, 73.64, 72.88),
    "AB": (72.50, 72.38, 69.47, 69.53, 70.98, 73.17, 70.94),
    "FT": (73.25, 71.59, 69.84, 70.22, 72.37, 72.86, 70.58),
    "FSP": (72.91, None, 69.95, 70.11, 71.89, 72.62, 70.23),
    "NST": (73.68, 72.24, 69.60, 69.53, 71.96, 73.30, 71.53),
    "CRD": (75.48, 74.14, 71.16, 71.46, 73.48, 75.51, 73.94),
}
#: the same README (= CRD paper, Table 2: different types), the one column whose models the zoo
#: has: vgg13 -> MobileNetV2 (RepDistiller's mobile_half, width 0.5, the zoo's ``mobilenetv2``)
_CRD_CROSS: dict[str, float] = {
    "Teacher": 74.64,
    "Student": 64.60,
    "KD": 67.37,
    "FitNet": 64.14,
    "AT": 59.40,
    "SP": 66.30,
    "CC": 64.86,
    "VID": 65.56,
    "RKD": 64.52,
    "PKT": 67.13,
    "AB": 66.06,
    "FT": 61.78,
    "NST": 58.16,
    "CRD": 69.73,
}
#: mdistiller README.md, "Decoupled Knowledge Distillation / Main Benchmark Results / On CIFAR-100"
#: (= DKD paper, Tables 1 and 2): (teacher, student) -> (KD, DKD)
_DKD_TABLE: dict[tuple[str, str], tuple[float, float]] = {
    ("resnet56", "resnet20"): (70.66, 71.97),
    ("resnet110", "resnet32"): (73.08, 74.11),
    ("resnet32x4", "resnet8x4"): (73.33, 76.32),
    ("wrn_40_2", "wrn_16_2"): (74.92, 76.23),
    ("wrn_40_2", "wrn_40_1"): (73.54, 74.81),
    ("vgg13", "vgg8"): (72.98, 74.68),
    ("vgg13", "mobilenetv2"): (67.37, 69.71),
}


def _pair_rows(teacher: str, student: str, cells: Mapping[str, float | None], source: str) -> list[Reference]:
    out = []
    for row, value in cells.items():
        if value is None:
            continue
        method, label = _ROWS[row]
        if row == "Teacher":
            out.append(Reference("cifar100", None, teacher, method, value, source, label))
        elif row == "Student":
            out.append(Reference("cifar100", None, student, method, value, source, label))
        else:
            out.append(Reference("cifar100", teacher, student, method, value, source, label))
    return out


def _build_references() -> tuple[Reference, ...]:
    rows: list[Reference] = []
    for i, (teacher, student) in enumerate(_CRD_PAIRS):
        rows += _pair_rows(teacher, student, {k: v[i] for k, v in _CRD_TABLE.items()}, "crd")
    rows += _pair_rows("vgg13", "mobilenetv2", _CRD_CROSS, "crd")
    for (teacher, student), (kd, dkd) in _DKD_TABLE.items():
        rows += _pair_rows(teacher, student, {"KD": kd, "DKD": dkd}, "dkd")
    # a model trained from labels appears once per column it stands in; one row per source is enough
    return tuple(dict.fromkeys(rows))


#: every published row (CIFAR-100 top-1, percent), in table order
REFERENCES: tuple[Reference, ...] = _build_references()


# ---- recipes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """A teacher-student pair of the zoo on a 32x32x3 dataset with the published schedule.

    ``lr`` is the student's learning rate (0.01 for a MobileNet student, else 0.05); ``dkd_beta``
    DKD's weight of the non-target-class term for this pair (mdistiller's config of the pair, else
    its default 8); ``note`` one line on what the pair is for."""

    name: str
    dataset: str
    teacher: str
    student: str
    lr: float = LR
    dkd_beta: float = DKD_BETA
    note: str = ""

    def _common(self, *, root: str | None, epochs: int | None, seed: int, lr: float) -> dict[str, Any]:
        n = _check_epochs(epochs)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise RecipeError(f"seed: expected a whole number >= 0, got {shown(seed)}")
        if root is not None and not isinstance(root, str):
            root = str(root)
        return {
            "seed": seed,
            "data": {
                "dataset": self.dataset,
                "root": root,
                "batch_size": BATCH_SIZE,
                "augment": {"crop_padding": CROP_PADDING, "hflip": True},
            },
            "optim": {
                "name": "sgd",
                "lr": lr,
                "momentum": MOMENTUM,
                "nesterov": False,
                "weight_decay": WEIGHT_DECAY,
            },
            "schedule": {"name": "step", "milestones": scaled_milestones(n), "gamma": GAMMA},
            "train": {"epochs": n},
        }

    def teacher_config(self, *, root: str | None = None, epochs: int | None = None, seed: int = 0) -> dict:
        """The run config (a dict for :func:`workbench.validate.validate_run_config`) that trains
        this recipe's teacher from labels on ``root`` (the folder holding the dataset's files):
        RepDistiller's ``train_teacher.py`` schedule, over ``epochs`` (default 240; the milestones
        scale with it). Raises :class:`RecipeError` for a bad ``epochs`` or ``seed``."""
        data = self._common(root=root, epochs=epochs, seed=seed, lr=LR)
        return {
            "kind": "teacher",
            "name": f"{self.dataset}-{self.teacher}-teacher",
            **data,
            "model": {"name": self.teacher},
            "distill": {"methods": [{"name": "none"}], "ce_weight": 1.0},
        }

    def config(
        self,
        *,
        root: str | None = None,
        epochs: int | None = None,
        method: str = "kd",
        seed: int = 0,
        teacher: str | None = None,
    ) -> dict:
        """The run config (a dict) that trains this recipe's student with ``method`` (a key of
        :data:`METHOD_OBJECTIVES`; ``none`` trains it from labels alone, the scratch baseline,
        at ``train_teacher.py``'s learning rate 0.05) on ``root``, over ``epochs`` (default 240; the
        milestones and DKD's warm-up scale with it), from ``teacher``: ``run:RUN_ID`` of a teacher
        run or a weights file (``.safetensors``, ``.pt``) of the recipe's teacher model. The
        teacher's model is written into the config (``teachers[0].model``), so that the run's pair
        is known (:func:`reference_for`); without ``teacher`` the config has none and needs one
        before it validates. Raises :class:`RecipeError` naming the bad argument."""
        if method not in METHOD_OBJECTIVES:
            raise RecipeError(
                f"method: {shown(method)} has no published recipe objective; "
                f"known: {', '.join(METHOD_OBJECTIVES)}"
            )
        goal = METHOD_OBJECTIVES[method]
        lr = LR if method == "none" else self.lr
        data = self._common(root=root, epochs=epochs, seed=seed, lr=lr)
        out: dict[str, Any] = {
            "kind": "student" if method == "none" else "distill",
            "name": f"{self.name}-{method}",
            **data,
            "model": {"name": self.student},
        }
        if method == "none":
            out["distill"] = {"methods": [{"name": "none"}], "ce_weight": 1.0}
        else:
            params = dict(goal.params)
            if method == "dkd":
                params["beta"] = self.dkd_beta
                params["warmup"] = DKD_WARMUP * data["train"]["epochs"] / EPOCHS
            out["distill"] = {
                "methods": [{"name": method, "weight": goal.weight, "params": params}],
                "ce_weight": goal.ce_weight,
            }
        if teacher is not None:
            if not isinstance(teacher, str) or not teacher.strip():
                raise RecipeError(
                    f"teacher: expected 'run:RUN_ID' or a weights file of a {self.teacher}, got {shown(teacher)}"
                )
            spec: dict[str, Any] = {"source": teacher, "model": {"name": self.teacher}}
            if teacher.startswith("run:"):
                spec["checkpoint"] = "final"  # the authors distil from the last epoch's teacher
            out["teachers"] = [spec]
        return out

    def references(self) -> list[Reference]:
        """The published rows of this recipe's pair: the teacher and the student trained from labels,
        then every method's student taught by this teacher (empty for a pair no paper lists, or a
        dataset other than CIFAR-100)."""
        alone = [
            r
            for r in REFERENCES
            if r.dataset == self.dataset and r.teacher is None and r.model in (self.teacher, self.student)
        ]
        alone.sort(key=lambda r: r.model != self.teacher)
        taught = [
            r
            for r in REFERENCES
            if r.dataset == self.dataset and r.teacher == self.teacher and r.model == self.student
        ]
        return alone + taught

    def to_dict(self) -> dict[str, Any]:
        """The recipe's fields and schedule, for listings and ``--json``."""
        return {
            "name": self.name,
            "dataset": self.dataset,
            "teacher": self.teacher,
            "student": self.student,
            "lr": self.lr,
            "dkd_beta": self.dkd_beta,
            "note": self.note,
            "epochs": EPOCHS,
            "milestones": list(MILESTONES),
            "gamma": GAMMA,
            "batch_size": BATCH_SIZE,
            "momentum": MOMENTUM,
            "weight_decay": WEIGHT_DECAY,
            "augment": {"crop_padding": CROP_PADDING, "hflip": True},
        }


def _check_epochs(epochs: Any) -> int:
    if epochs is None:
        return EPOCHS
    if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 10000:
        raise RecipeError(f"epochs: expected a whole number from 1 to 10000, got {shown(epochs)}")
    return epochs


def scaled_milestones(epochs: int) -> list[int]:
    """The milestones 150, 180, 210 of 240 epochs scaled to ``epochs`` (rounded, at least 1), so
    that a shorter run decays at the same fractions of its length; repeats are kept, so the last
    learning rate is always ``lr * 0.1**3``. ``epochs=240`` gives ``[150, 180, 210]``."""
    n = _check_epochs(epochs)
    return [max(1, math.floor(m * n / EPOCHS + 0.5)) for m in MILESTONES]


_NOTES = {
    ("resnet56", "resnet20"): "CRD and DKD Table 1: deep-to-shallow ResNet",
    ("resnet110", "resnet20"): "CRD Table 1: the largest depth gap",
    ("resnet110", "resnet32"): "CRD and DKD Table 1",
    ("resnet32x4", "resnet8x4"): "CRD and DKD Table 1: the wide pair most papers lead with",
    ("wrn_40_2", "wrn_16_2"): "CRD and DKD Table 1: shallower Wide ResNet",
    ("wrn_40_2", "wrn_40_1"): "CRD and DKD Table 1: thinner Wide ResNet",
    ("vgg13", "vgg8"): "CRD and DKD Table 1: plain conv nets",
    ("vgg13", "mobilenetv2"): "CRD and DKD Table 2: a different architecture type (lr 0.01)",
    ("resnet20", "resnet8"): "a CPU-friendly pair (no published row for the pair)",
}
#: DKD's beta per pair: mdistiller configs/cifar100/dkd/{res56_res20,res110_res32: 2.0;
#: wrn40_2_wrn_16_2, wrn40_2_wrn_40_1, vgg13_vgg8, vgg13_mv2: 6.0}; res32x4_res8x4 sets none (8.0)
_DKD_BETAS = {
    ("resnet56", "resnet20"): 2.0,
    ("resnet110", "resnet32"): 2.0,
    ("wrn_40_2", "wrn_16_2"): 6.0,
    ("wrn_40_2", "wrn_40_1"): 6.0,
    ("vgg13", "vgg8"): 6.0,
    ("vgg13", "mobilenetv2"): 6.0,
}
_SMALL_LR_STUDENTS = ("mobilenetv2",)


def _recipe(dataset: str, teacher: str, student: str) -> Recipe:
    pair = (teacher, student)
    note = _NOTES[pair] if dataset == "cifar100" else "the CIFAR-100 schedule on CIFAR-10 (no published row)"
    return Recipe(
        name=f"{dataset}-{teacher}-{student}",
        dataset=dataset,
        teacher=teacher,
        student=student,
        lr=LR_SMALL if student in _SMALL_LR_STUDENTS else LR,
        dkd_beta=_DKD_BETAS.get(pair, DKD_BETA),
        note=note,
    )


#: every recipe by name: the CIFAR-100 pairs of the papers' tables (and a CPU-friendly one), and two
#: CIFAR-10 pairs with the same schedule
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        *(_recipe("cifar100", t, s) for t, s in _NOTES),
        _recipe("cifar10", "resnet56", "resnet20"),
        _recipe("cifar10", "resnet20", "resnet8"),
    )
}


def list_recipes() -> list[Recipe]:
    """Every recipe, CIFAR-100 pairs first in the order of the papers' tables."""
    return list(RECIPES.values())


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (e.g. ``cifar100-resnet32x4-resnet8x4``); an unknown name raises
    :class:`RecipeError` with the closest known name and the list."""
    if isinstance(name, str) and name in RECIPES:
        return RECIPES[name]
    close = difflib.get_close_matches(name, list(RECIPES), n=1) if isinstance(name, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise RecipeError(f"recipe {shown(name)}: unknown name{hint}; known: {', '.join(RECIPES)}")


# ---- matching a run to the published rows --------------------------------------------------------


def _as_config(config: RunConfig | Mapping[str, Any]) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, Mapping):
        return validate_config(config)
    raise ConfigError(f"config: expected a RunConfig or a mapping of fields, got {type(config).__name__}")


def method_key(config: RunConfig | Mapping[str, Any]) -> str:
    """The method a run config trains with, as the tables name it: ``none`` for a teacher or a
    scratch student, the one weighted method's name (``kd``, ``dkd``, ``crd``, ...), or the weighted
    methods' names sorted and joined by ``+`` for a combination (which no table row has)."""
    cfg = _as_config(config)
    names = sorted({m.name for m in cfg.distill.methods if m.name != "none" and m.weight > 0})
    return "+".join(names) if names else "none"


def reference_for(
    config: RunConfig | Mapping[str, Any], *, teacher_model: str | None = None
) -> list[Reference]:
    """The published rows that match a run config (a :class:`RunConfig` or its mapping): same dataset
    (CIFAR-100 with its fine labels), same student model (zoo name, default arguments), same method
    (:func:`method_key`) and, for a distilled run, the same teacher model. A teacher or scratch run
    matches the rows of its model trained from labels.

    The teacher's model is ``teacher_model`` when given (the caller read it from the teacher run),
    else ``teachers[0].model.name`` of the config (a recipe writes it there). A distilled run whose
    teacher model is unknown, that has several teachers or non-default model arguments, or a
    dataset, pair or method no table lists, gives ``[]``. Raises
    :class:`~workbench.config.ConfigError` for a mapping that is not a valid config."""
    cfg = _as_config(config)
    if cfg.model.kwargs or cfg.data.options.get("label_mode", "fine") != "fine":
        return []
    method = method_key(cfg)
    teacher = None
    if method != "none":
        if len(cfg.teachers) != 1:
            return []
        spec = cfg.teachers[0].model
        if spec is not None and spec.kwargs:
            return []
        teacher = teacher_model if teacher_model is not None else (spec.name if spec is not None else None)
        if teacher is None:
            return []
    return [
        r
        for r in REFERENCES
        if r.dataset == cfg.data.dataset
        and r.model == cfg.model.name
        and r.method == method
        and r.teacher == teacher
    ]


def compare_with_references(
    config: RunConfig | Mapping[str, Any], test_acc: float | None, *, teacher_model: str | None = None
) -> list[dict[str, Any]]:
    """:func:`reference_for` as table rows for a face: each :meth:`Reference.to_dict` plus ``run``
    (the run's ``test_acc``, a fraction, in percent; ``None`` when unknown) and ``difference`` (run
    minus published, percentage points; ``None`` when the run's accuracy is unknown)."""
    ok = isinstance(test_acc, (int, float)) and not isinstance(test_acc, bool) and math.isfinite(test_acc)
    run = round(100.0 * float(test_acc), 2) if ok else None
    rows = []
    for ref in reference_for(config, teacher_model=teacher_model):
        row = ref.to_dict()
        row["run"] = run
        row["difference"] = None if run is None else round(run - ref.top1, 2)
        rows.append(row)
    return rows

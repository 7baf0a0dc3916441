"""The diagnostic panels over a teacher and a student: CAMs, similarity, landscapes, agreement and
the teacher's dark knowledge. Each calls one analysis of :mod:`workbench.analysis` and draws one
figure of :mod:`workbench.viz`; nothing is computed here."""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from torch import nn

from workbench.runs.session import OpenedRun, open_run
from workbench.vocabulary import DEFAULT_N_SAMPLES
from workbench.widgets.base import Background, Panel, PanelError

#: what a layer control shows for ``None``, the method's default layer
DEFAULT_LAYER = "default"


class _ModelPanel(Panel):
    """A panel over models and data, buildable from a stored run (:meth:`from_run`)."""

    @classmethod
    def from_run(
        cls,
        run_or_id: Any,
        *,
        store: Any = None,
        n_samples: int = DEFAULT_N_SAMPLES,
        checkpoint: str = "final",
        seed: int = 0,
        device: str | torch.device | None = None,
        **kw: Any,
    ) -> _ModelPanel:
        """The panel over a stored run, opened by :func:`workbench.runs.session.open_run`: its teacher
        and student (at ``checkpoint``) and ``n_samples`` test samples of its dataset drawn with ``seed``.

        Raises:
            RunStoreError / PanelError: the run cannot be found or has no teacher (one line).
        """
        opened = open_run(
            run_or_id, store=store, n_samples=n_samples, checkpoint=checkpoint, seed=seed, device=device
        )
        return cls._from_inputs(opened, **kw)

    @classmethod
    @abstractmethod
    def _from_inputs(cls, inputs: OpenedRun, **kw: Any) -> _ModelPanel:
        """The panel built from a stored run's models and data (each explorer defines it)."""

    @staticmethod
    def _need_teacher(inputs: OpenedRun) -> nn.Module:
        if inputs.teacher is None:
            raise PanelError(f"run {inputs.run.id}: has no teacher in its config; this panel needs one")
        return inputs.teacher


def _stats(inputs: OpenedRun) -> dict[str, Any]:
    data = inputs.dataset
    return {"mean": getattr(data, "mean", None), "std": getattr(data, "std", None)}


# ---- CAMs -------------------------------------------------------------------------------------------
class CamExplorer(_ModelPanel):
    """Teacher and student class activation maps side by side (:func:`workbench.analysis.compare_cams`,
    drawn by :func:`workbench.viz.cam_grid`).

    Controls: ``method`` (any CAM method), ``layer`` / ``teacher_layer`` (the student's and the
    teacher's module paths; ``None``, shown as ``default``, is the method's default layer), ``target``
    (label / predicted / teacher / student), ``pick`` (how images are chosen:
    :data:`workbench.analysis.cam.PICKS`, the vocabulary's image choices less ``upload``), ``class``
    (for ``pick="class"``), ``n_images``, ``seed``.
    ``indices`` holds the positions of the images shown.
    """

    title = "Class activation maps"

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        scratch: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        method: str = "gradcam",
        target: str = "label",
        pick: str = "random",
        layer: str | None = None,
        teacher_layer: str | None = None,
        n_images: int = 8,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        from workbench.analysis import TARGET_MODES, list_cam_methods
        from workbench.analysis.cam import PICKS, cam_layers

        self.teacher, self.student, self.scratch = teacher, student, scratch
        self.images, self.labels = images, torch.as_tensor(labels).long()
        self.class_names = list(class_names) if class_names is not None else None
        self.mean, self.std = mean, std
        self.indices: np.ndarray = np.arange(0)
        self._gallery: Any = None  # the agreement gallery, computed once for "disagreement"
        shape = tuple(images.shape[1:])
        layers_s = [DEFAULT_LAYER, *cam_layers(student, shape)[1:]]
        layers_t = [DEFAULT_LAYER, *cam_layers(teacher, shape)[1:]]
        k = int(self.labels.max()) + 1 if len(self.labels) else 1
        classes = self.class_names or [str(i) for i in range(k)]
        self._add("method", W.Dropdown(options=list_cam_methods(), value=method, description="method"))
        self._add("layer", W.Dropdown(options=layers_s, value=DEFAULT_LAYER, description="student layer"))
        self._add("teacher_layer", W.Dropdown(options=layers_t, value=DEFAULT_LAYER, description="teacher layer"))
        self._add("target", W.Dropdown(options=list(TARGET_MODES), value=target, description="target"))
        self._add("pick", W.Dropdown(options=list(PICKS), value="random", description="images"))
        self._add("class", W.Dropdown(options=list(range(len(classes))), value=0, description="class"))
        self.controls["class"].options = [(c, i) for i, c in enumerate(classes)]
        self._add("n_images", W.BoundedIntText(value=n_images, min=1, max=max(1, len(images)),
                                               description="images"))
        self._add("seed", W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed"))
        c = self.controls
        self._layout(
            W.HBox([c["method"], c["target"], c["pick"], c["class"]]),
            W.HBox([c["layer"], c["teacher_layer"], c["n_images"], c["seed"]]),
        )
        if not self._apply({"pick": pick, "layer": layer, "teacher_layer": teacher_layer}):
            return  # the bad value is shown in the panel
        self.refresh()

    @classmethod
    def _from_inputs(cls, inputs: OpenedRun, **kw: Any) -> CamExplorer:
        kw.setdefault("class_names", inputs.sample.class_names)
        for key, v in _stats(inputs).items():
            kw.setdefault(key, v)
        return cls(cls._need_teacher(inputs), inputs.student, inputs.sample.images, inputs.sample.labels, **kw)

    def _check_value(self, name: str, value: Any) -> Any:
        if name in ("layer", "teacher_layer") and value is None:
            value = DEFAULT_LAYER  # None: the method's default layer, as everywhere in the workbench
        if name == "class" and isinstance(value, str) and self.class_names and value in self.class_names:
            return self.class_names.index(value)
        if name == "class":
            n = len(self.controls["class"].options)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < n:
                raise PanelError(f"class: expected a class index in [0, {n - 1}] or a class name, got {value!r}")
            return int(value)
        return super()._check_value(name, value)

    def _pick(self) -> np.ndarray:
        """Positions of the images to explain, by the selection controls
        (:func:`workbench.analysis.cam.select_images`, the selector the app uses too)."""
        from workbench.analysis import AnalysisError
        from workbench.analysis.cam import select_images

        mode = self.value("pick")
        gallery = None
        if mode == "disagreement":
            if self._gallery is None:
                from workbench.analysis import agreement_report

                self._gallery = agreement_report(self.teacher, self.student, self.images, self.labels).gallery
            gallery = self._gallery.indices
        try:
            return select_images(
                self.labels, mode, count=int(self.value("n_images")), seed=int(self.value("seed")),
                klass=int(self.value("class")) if mode == "class" else None, gallery=gallery,
            )
        except AnalysisError as err:
            raise PanelError(str(err)) from None

    def _compute(self) -> None:
        from workbench.analysis import compare_cams
        from workbench.analysis.cam import check_cam_layer, get_cam_method
        from workbench.viz import cam_grid

        idx = self._pick()
        sel = torch.as_tensor(idx, dtype=torch.long)
        layers = {
            "teacher": None if self.value("teacher_layer") == DEFAULT_LAYER else self.value("teacher_layer"),
            "student": None if self.value("layer") == DEFAULT_LAYER else self.value("layer"),
        }
        if get_cam_method(self.value("method")).kind != "pixel":  # a model without maps says so in one line
            shape = tuple(self.images.shape[1:])
            check_cam_layer(self.teacher, layers["teacher"], shape, name="teacher")
            check_cam_layer(self.student, layers["student"], shape, name="student")
        extra = {"scratch": self.scratch} if self.scratch is not None else None
        if extra:
            layers["scratch"] = None
        result = compare_cams(
            self.teacher,
            self.student,
            self.images[sel],
            self.labels[sel],
            method=self.value("method"),
            layers=layers,
            target=self.value("target"),
            extra=extra,
            class_names=self.class_names,
            progress=self._report,
        )
        self.indices, self.result = idx, result
        self._show(
            cam_grid(result, self.images[sel], mean=self.mean, std=self.std, max_images=len(idx),
                     class_names=self.class_names)
        )


# ---- similarity ------------------------------------------------------------------------------------
class SimilarityExplorer(_ModelPanel):
    """Teacher-student feature similarity: the CKA heatmap of every stage pair
    (:func:`workbench.analysis.cka_matrix`), the student at any snapshot epoch, and the 2-D embedding
    (:func:`workbench.analysis.embedding_2d`).

    Controls: ``view`` (``cka`` / ``embedding``), ``kernel`` (linear / rbf), ``epoch`` (over
    ``snapshots``, a mapping epoch -> student network; ``0`` = the student given), ``method`` of the
    embedding (pca / tsne).
    """

    title = "Feature similarity"

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        images: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        snapshots: Mapping[int, nn.Module] | None = None,
        kernel: str = "linear",
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.teacher, self.student, self.images = teacher, student, images
        self.labels = None if labels is None else torch.as_tensor(labels).long()
        self.snapshots = dict(snapshots or {})
        self.class_names = list(class_names) if class_names is not None else None
        self._cache: dict[tuple[Any, ...], Any] = {}
        epochs = [0] + sorted(int(e) for e in self.snapshots)
        self._add("view", W.ToggleButtons(options=["cka", "embedding"], value="cka", description="view"))
        self._add("kernel", W.Dropdown(options=["linear", "rbf"], value=kernel, description="kernel"))
        self._add("epoch", W.SelectionSlider(options=epochs, value=epochs[0], description="epoch"))
        self._add("method", W.Dropdown(options=["pca", "tsne"], value="pca", description="embedding"))
        c = self.controls
        self._layout(W.HBox([c["view"], c["kernel"], c["method"]]), c["epoch"])
        self.refresh()

    @classmethod
    def _from_inputs(cls, inputs: OpenedRun, **kw: Any) -> SimilarityExplorer:
        run = inputs.run
        device = next(inputs.student.parameters()).device
        snaps = {e: run.load_model(name, device=device) for e, name in run.epoch_checkpoints()}
        kw.setdefault("snapshots", snaps)
        kw.setdefault("labels", inputs.sample.labels)
        kw.setdefault("class_names", inputs.sample.class_names)
        return cls(cls._need_teacher(inputs), inputs.student, inputs.sample.images, **kw)

    def _model(self) -> nn.Module:
        epoch = int(self.value("epoch"))
        return self.student if epoch == 0 else self.snapshots[epoch]

    def _compute(self) -> None:
        from workbench.analysis import cka_matrix, embedding_2d
        from workbench.viz import cka_heatmap, embedding_scatter

        epoch = int(self.value("epoch"))
        if self.value("view") == "cka":
            key = ("cka", epoch, self.value("kernel"))
            if key not in self._cache:
                self._cache[key] = cka_matrix(
                    self.teacher, self._model(), self.images, kernel=self.value("kernel"), progress=self._report
                )
            self.result = self._cache[key]
            label = "the student given" if epoch == 0 else f"epoch {epoch}"
            self._show(cka_heatmap(self.result, title=f"Linear CKA · {label}" if self.value("kernel") == "linear"
                                   else f"RBF CKA · {label}"))
            return
        if self.labels is None:
            raise PanelError("view: the embedding needs labels; pass labels= to SimilarityExplorer")
        key = ("embedding", epoch, self.value("method"))
        if key not in self._cache:
            self._cache[key] = embedding_2d(
                self.teacher, self._model(), self.images, self.labels, method=self.value("method"),
                class_names=self.class_names, progress=self._report,
            )
        self.result = self._cache[key]
        self._show(embedding_scatter(self.result, self.class_names))


# ---- landscape -------------------------------------------------------------------------------------
class LandscapeExplorer(_ModelPanel):
    """The loss landscape around the student (Li et al. 2018, filter-normalized directions), computed
    in a background thread; the figure fills in row by row (``on_row``) and :meth:`stop` cancels.

    Controls: ``mode`` (1d / 2d), ``objective``, ``steps``, ``span`` (the grid covers
    ``[-span, span]``), ``view`` (surface / contours for 2-D), ``seed``. Changing a control starts a new
    computation; :meth:`start` starts one with the current controls. ``done`` is true when the last
    computation finished; ``rows`` counts the partial results drawn. ``temperature`` is the softmax
    temperature of the ``kd`` objective (``None``: the built-in T=4); built from a run
    (:meth:`from_run`), it is that run's own ``kd`` temperature, as on the app's landscape page.
    """

    title = "Loss landscape"

    def __init__(
        self,
        teacher: nn.Module | None,
        student: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        steps: int = 11,
        span: float = 1.0,
        objective: str = "cross_entropy",
        mode: str = "2d",
        seed: int = 0,
        temperature: float | None = None,
        class_names: Sequence[str] | None = None,
        autostart: bool = False,
    ) -> None:
        super().__init__()
        from workbench.analysis import builtin_objectives
        from workbench.analysis.objectives import landscape_objectives

        landscape_objectives(["kd"], temperature=temperature)  # a bad temperature fails here, in one line
        self.temperature = temperature
        self.teacher, self.student, self.images, self.labels = teacher, student, images, labels
        self.class_names = list(class_names) if class_names is not None else None
        self.done = False
        self.cancelled = False
        self.rows = 0
        self._job = Background("landscape")
        self._lock = threading.Lock()
        objectives = list(builtin_objectives())
        self._add("mode", W.ToggleButtons(options=["1d", "2d"], value=mode, description="mode"))
        self._add("objective", W.Dropdown(options=objectives, value=objective, description="objective"))
        self._add("steps", W.BoundedIntText(value=steps, min=3, max=101, description="steps"))
        self._add("span", W.BoundedFloatText(value=span, min=0.01, max=100.0, step=0.1, description="span"))
        self._add("view", W.Dropdown(options=["surface", "contours"], value="surface", description="view"))
        self._add("seed", W.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed"))
        self.start_button = W.Button(description="Start", button_style="primary")
        self.stop_button = W.Button(description="Stop")
        self.start_button.on_click(lambda _b: self.start())
        self.stop_button.on_click(lambda _b: self.stop())
        c = self.controls
        self._layout(
            W.HBox([c["mode"], c["objective"], c["view"]]),
            W.HBox([c["steps"], c["span"], c["seed"], self.start_button, self.stop_button]),
        )
        if autostart:
            self.start()

    @classmethod
    def _from_inputs(cls, inputs: OpenedRun, **kw: Any) -> LandscapeExplorer:
        from workbench.runs.inspect import kd_temperature

        kw.setdefault("class_names", inputs.sample.class_names)
        kw.setdefault("temperature", kd_temperature(inputs.run))
        return cls(inputs.teacher, inputs.student, inputs.sample.images, inputs.sample.labels, **kw)

    @property
    def running(self) -> bool:
        """Whether a computation is in progress."""
        return self._job.running

    def _draw(self, result: Any) -> None:
        from workbench.viz import landscape_contours, landscape_lines, landscape_surface

        objective = next(iter(result.values))
        if result.kind == "2d" or getattr(result, "betas", None) is not None and self.value("mode") == "2d":
            fig = (landscape_surface(result, objective) if self.value("view") == "surface"
                   else landscape_contours(result, objective))
        else:
            fig = landscape_lines(result)
        self._show(fig)

    def _compute(self) -> None:
        self.start()

    def start(self) -> LandscapeExplorer:
        """Compute the landscape of the current controls in the background (stopping any running one)."""
        from workbench.analysis import landscape_1d, landscape_2d
        from workbench.analysis.objectives import landscape_objectives

        self._job.stop()
        self._job.wait(30)
        self.error, self.done, self.cancelled, self.rows = None, False, False, 0
        self.status.value = ""
        mode, steps, span = self.value("mode"), int(self.value("steps")), float(self.value("span"))
        kw = {
            "objectives": landscape_objectives([self.value("objective")], temperature=self.temperature),
            "steps": steps,
            "span": (-span, span),
            "seed": int(self.value("seed")),
            "class_names": self.class_names,
        }
        fn = landscape_2d if mode == "2d" else landscape_1d

        def on_row(partial: Any) -> None:
            with self._lock:
                self.rows += 1
                self.result = partial
                self._draw(partial)

        def work(progress: Any, cancel: Any) -> Any:
            return fn(self.teacher, self.student, self.images, self.labels, progress=progress, cancel=cancel,
                      on_row=on_row, **kw)

        def done(result: Any) -> None:
            with self._lock:
                self.result = result
                self._draw(result)
                self.done = True

        def cancelled() -> None:
            self.cancelled = True
            self.progress_text.value = "stopped"

        self._job.start(work, self._report, done, self._fail, cancelled)
        return self

    def stop(self) -> LandscapeExplorer:
        """Cancel the running computation (what was drawn stays)."""
        self._job.stop()
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the computation ends (or ``timeout`` seconds); returns :attr:`result`."""
        self._job.wait(timeout)
        return self.result

    def close(self) -> None:
        self._job.stop()
        super().close()


# ---- agreement -------------------------------------------------------------------------------------
AGREEMENT_VIEWS = ("confusion", "per_class", "reliability", "rank_correlation", "gallery")


class AgreementExplorer(_ModelPanel):
    """Teacher-student agreement (:func:`workbench.analysis.agreement_report`): confusion matrices,
    per-class bars, reliability diagrams, non-target rank correlation and the disagreement gallery.

    Controls: ``view`` (one of :data:`AGREEMENT_VIEWS`), ``temperature`` (of the KL and the soft labels).
    """

    title = "Teacher-student agreement"

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        class_names: Sequence[str] | None = None,
        view: str = "confusion",
        temperature: float = 1.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.teacher, self.student, self.images, self.labels = teacher, student, images, labels
        self.class_names = list(class_names) if class_names is not None else None
        self.mean, self.std = mean, std
        self._cache: dict[float, Any] = {}
        self._add("view", W.Dropdown(options=list(AGREEMENT_VIEWS), value=view, description="view"))
        self._add("temperature", W.BoundedFloatText(value=temperature, min=0.05, max=100.0, step=0.5,
                                                    description="T"))
        self._layout(W.HBox([self.controls["view"], self.controls["temperature"]]))
        self.refresh()

    @classmethod
    def _from_inputs(cls, inputs: OpenedRun, **kw: Any) -> AgreementExplorer:
        kw.setdefault("class_names", inputs.sample.class_names)
        for key, v in _stats(inputs).items():
            kw.setdefault(key, v)
        return cls(cls._need_teacher(inputs), inputs.student, inputs.sample.images, inputs.sample.labels, **kw)

    def _compute(self) -> None:
        from workbench import viz
        from workbench.analysis import agreement_report

        temp = float(self.value("temperature"))
        if temp not in self._cache:
            self._cache[temp] = agreement_report(
                self.teacher, self.student, self.images, self.labels, temperature=temp,
                class_names=self.class_names, progress=self._report,
            )
        self.result = rep = self._cache[temp]
        view = self.value("view")
        if view == "confusion":
            fig = viz.confusion_matrices(rep, self.class_names)
        elif view == "per_class":
            fig = viz.per_class_bars(rep, self.class_names)
        elif view == "reliability":
            fig = viz.reliability_diagrams(rep)
        elif view == "rank_correlation":
            fig = viz.rank_correlation_bars(rep, self.class_names)
        else:
            fig = viz.disagreement_gallery(rep, self.images, mean=self.mean, std=self.std,
                                           class_names=self.class_names)
        self._show(fig)


# ---- dark knowledge --------------------------------------------------------------------------------
class DarkKnowledge(_ModelPanel):
    """A temperature slider over a teacher's soft labels (Hinton et al. 2015), with the KD loss of a
    student at that temperature (:mod:`workbench.analysis.soft_labels`).

    The models run once on the images given; moving the slider recomputes the soft labels from the
    kept logits. Controls: ``temperature``, ``sample`` (which of the images to draw).
    ``kd_loss``: ``T² · KL(teacher || student)`` averaged over all the images given (``None`` without
    a student); ``entropy``: of the drawn sample's soft labels (nats).
    """

    title = "Dark knowledge"

    def __init__(
        self,
        teacher: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        student: nn.Module | None = None,
        class_names: Sequence[str] | None = None,
        temperature: float = 4.0,
        sample: int = 0,
        max_temperature: float = 20.0,
    ) -> None:
        super().__init__()
        from workbench.analysis.soft_labels import soft_labels

        self.teacher, self.student, self.images, self.labels = teacher, student, images, labels
        self.class_names = list(class_names) if class_names is not None else None
        self._base = None
        try:
            # the one forward pass of each model; the slider works from these logits
            self._base = soft_labels(teacher, student, images, labels, temperature=1.0,
                                     class_names=self.class_names, progress=self._report)
        except Exception as err:  # noqa: BLE001 - shown in the panel
            self._fail(err)
        n = len(images) if hasattr(images, "__len__") else 1
        self._add("temperature", W.FloatLogSlider(value=temperature, base=10, min=-1, max=float(np.log10(max_temperature)),
                                                  step=0.01, description="T", continuous_update=False))
        self._add("sample", W.BoundedIntText(value=sample, min=0, max=max(0, n - 1), description="sample"))
        self._layout(W.HBox([self.controls["temperature"], self.controls["sample"]]))
        if self._base is not None:
            self.refresh()

    @classmethod
    def _from_inputs(cls, inputs: OpenedRun, **kw: Any) -> DarkKnowledge:
        from workbench.runs.inspect import kd_temperature

        kw.setdefault("class_names", inputs.sample.class_names)
        kw.setdefault("student", inputs.student)
        kw.setdefault("temperature", kd_temperature(inputs.run))  # the run's own distillation temperature
        return cls(cls._need_teacher(inputs), inputs.sample.images, inputs.sample.labels, **kw)

    def _check_value(self, name: str, value: Any) -> Any:
        if name == "temperature":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise PanelError(f"temperature: expected a positive number, got {value!r}")
            w = self.controls["temperature"]
            lo, hi = w.base**w.min, w.base**w.max
            if not lo <= value <= hi:
                raise PanelError(f"temperature: expected a value in [{lo:g}, {hi:g}], got {value!r}")
            return float(value)
        return super()._check_value(name, value)

    @property
    def kd_loss(self) -> float | None:
        """The student's KD loss ``T² · KL`` at the current temperature, mean over the images."""
        return None if self.result is None else self.result.kd_loss

    @property
    def entropy(self) -> float | None:
        """Entropy (nats) of the drawn sample's soft labels at the current temperature."""
        return None if self.result is None else float(self.result.entropy[int(self.value("sample"))])

    @property
    def soft_labels(self) -> np.ndarray | None:
        """The drawn sample's soft labels ``softmax(z / T)``."""
        return None if self.result is None else self.result.teacher_probs[int(self.value("sample"))]

    def _compute(self) -> None:
        from workbench.analysis.soft_labels import soft_labels_from_logits
        from workbench.viz.soft_labels import soft_label_bars

        if self._base is None:
            raise PanelError(self.error or "the models could not be run on the images")
        base = self._base
        self.result = soft_labels_from_logits(
            base.teacher_logits, base.student_logits, base.labels, temperature=float(self.value("temperature")),
            samples=base.samples, names=base.names, class_names=self.class_names,
        )
        self._show(soft_label_bars(self.result, int(self.value("sample"))))


__all__ = [
    "AGREEMENT_VIEWS",
    "AgreementExplorer",
    "CamExplorer",
    "DarkKnowledge",
    "LandscapeExplorer",
    "SimilarityExplorer",
]

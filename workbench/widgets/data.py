"""A panel over the datasets: pick a built-in one or one of the store's and see its preview (samples
per class, counts per split, warnings); add a folder or an uploaded ``.zip`` to the store by name."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import ipywidgets as W

from workbench.data.preview import MAX_PER_CLASS, DatasetPreview, preview_dataset
from workbench.runs.datasets import LOADERS, DatasetEntry, add_dataset, dataset_choices, open_dataset
from workbench.runs.session import as_store
from workbench.widgets.base import Background, Panel, PanelError

#: the ``loader`` choice that lets the files tell
AUTO = "auto"
#: the controls that only fill in an addition: changing them recomputes nothing
_ADD_CONTROLS = ("name", "path", "loader")


class DataPanel(Panel):
    """The datasets a run can train on: the built-in ones that load without a folder and the store's
    own (:func:`workbench.runs.datasets.dataset_choices`), each previewed with
    :func:`workbench.data.preview_dataset` and drawn by
    :func:`workbench.viz.datasets.dataset_preview_figure`, in a background thread.

    Controls: ``dataset`` (its name), ``per_class`` (sample images per class), ``seed`` (of the
    samples); and, to add one, ``name`` (the store's name for it), ``path`` (a folder or a ``.zip``
    on this machine), ``loader`` (``auto`` or a loader name). :attr:`upload` takes a ``.zip`` from
    the browser instead of ``path``; :meth:`add` (or the Add button) adds it and previews it.

    State: ``result`` (the :class:`~workbench.data.DatasetPreview`), ``warnings`` (its warnings and
    the stored dataset's notes), ``added`` (the entry of the last dataset added). ``wait()`` blocks
    until the preview (or an addition) is ready; ``stop()`` cancels it.
    """

    title = "Datasets"

    def __init__(
        self,
        *,
        store: Any = None,
        dataset: str = "mnist",
        per_class: int = 8,
        seed: int = 0,
        autostart: bool = True,
    ) -> None:
        super().__init__()
        self.store = as_store(store)
        self.done = False
        self.added: DatasetEntry | None = None
        self.warnings: list[str] = []
        self._job = Background("dataset")
        options = self._choices()
        names = [value for _, value in options]
        self._add("dataset", W.Dropdown(options=options, value=dataset if dataset in names else names[0],
                                        description="dataset"))
        self._add("per_class", W.BoundedIntText(value=per_class, min=1, max=MAX_PER_CLASS,
                                                description="per class"))
        self._add("seed", W.IntText(value=seed, description="seed"))
        self._add("name", W.Text(value="", description="name",
                                 tooltip="the store's name for it: lower-case letters, digits, - and _"))
        self._add("path", W.Text(value="", description="path",
                                 tooltip="a folder of class sub-folders, or a .zip file, on this machine"))
        self._add("loader", W.Dropdown(options=[AUTO, *LOADERS], value=AUTO, description="loader"))
        self.upload = W.FileUpload(accept=".zip", multiple=False, description="Upload .zip")
        self.add_button = W.Button(description="Add", button_style="primary")
        self.add_button.on_click(lambda _b: self.add())
        self.warnings_view = W.HTML(value="")
        c = self.controls
        self._layout(
            W.HBox([c["dataset"], c["per_class"], c["seed"]]),
            self.warnings_view,
            W.HTML(value="<b>Add a dataset to the store</b>"),
            W.HBox([c["name"], c["loader"]]),
            W.HBox([c["path"], self.upload, self.add_button]),
        )
        if dataset not in names:
            self._fail(PanelError(f"dataset: unknown {dataset!r}; known: {', '.join(names)}"))
        elif autostart:
            self.refresh()

    def _choices(self) -> list[tuple[str, str]]:
        return [(f"{c.name} ({c.where})", c.name) for c in dataset_choices(self.store) if c.loads_alone]

    def _check_value(self, name: str, value: Any) -> Any:
        if name in ("name", "path") and not isinstance(value, str):
            raise PanelError(f"{name}: expected text, got {type(value).__name__}")
        if name == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
            raise PanelError(f"seed: expected an integer, got {value!r}")
        return super()._check_value(name, value)

    def _changed(self, name: str | None, change: Any) -> None:
        if name in _ADD_CONTROLS:
            return  # they wait for add()
        super()._changed(name, change)

    def _compute(self) -> None:
        name = self.value("dataset")
        per_class, seed = int(self.value("per_class")), int(self.value("seed"))
        self.done, self.result = False, None

        def work(progress: Any, cancel: Any) -> DatasetPreview:
            progress(0, 2, f"loading {name}")
            dataset = open_dataset(self.store, name)
            cancel.raise_if_cancelled("preview")
            progress(1, 2, f"previewing {name}")
            return preview_dataset(dataset, per_class=per_class, seed=seed)

        self._job.start(work, self._report, self._shown, self._fail, self._stopped)

    def _notes(self, name: str) -> list[str]:
        from workbench.runs.datasets import list_store_datasets

        return next((e.notes for e in list_store_datasets(self.store) if e.name == name), [])

    def _shown(self, preview: DatasetPreview) -> None:
        from workbench.viz.datasets import dataset_preview_figure

        self.result = preview
        self.warnings = [f"note: {n}" for n in self._notes(preview.name)] + [
            f"warning: {w}" for w in preview.warnings
        ]
        lines = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
        self.warnings_view.value = f"<ul>{lines}</ul>" if lines else "no warnings"
        self._show(dataset_preview_figure(preview))
        self._report(1, 1, f"{preview.name} previewed")
        self.done = True

    def _stopped(self) -> None:
        self.progress_text.value = "stopped"

    def _source(self, source: Any) -> Any:
        """What to add: ``source`` when given, else the uploaded ``.zip``, else the ``path`` control."""
        if source is not None:
            return source
        if self.upload.value:
            upload = self.upload.value[0]
            data = io.BytesIO(bytes(upload["content"]))
            data.name = str(upload["name"])
            return data
        path = self.value("path").strip()
        if not path:
            raise PanelError("path: give a folder or a .zip file, or upload a .zip")
        return Path(path).expanduser()

    def add(
        self,
        name: str | None = None,
        source: Any = None,
        *,
        loader: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> DataPanel:
        """Add a dataset to the store in the background (:func:`workbench.runs.datasets.add_dataset`),
        then preview it and select it.

        ``name``, ``source`` (a folder, a ``.zip`` path, its bytes or a file object) and ``loader``
        default to the controls and the upload; ``options`` are the loader's. A bad value or a
        refused dataset is shown as one line and kept in :attr:`error`; nothing is raised.
        Returns ``self`` (``wait()`` blocks until it is done).
        """
        try:
            name = (name if name is not None else self.value("name")).strip()
            chosen = loader if loader is not None else self.value("loader")
            src = self._source(source)
        except Exception as err:  # noqa: BLE001 - shown in the panel as one line
            self._fail(err)
            return self
        per_class, seed = int(self.value("per_class")), int(self.value("seed"))
        self.done, self.error = False, None
        self.status.value = ""

        def work(progress: Any, cancel: Any) -> tuple[DatasetEntry, DatasetPreview]:
            entry = add_dataset(self.store, name, src, loader=None if chosen == AUTO else chosen,
                                options=options, progress=progress, cancel=cancel)
            return entry, preview_dataset(entry.load(), per_class=per_class, seed=seed)

        def done(result: tuple[DatasetEntry, DatasetPreview]) -> None:
            entry, preview = result
            self.added = entry
            self._suspend += 1
            try:
                self.controls["dataset"].options = self._choices()
                self.controls["dataset"].value = entry.name
                self.upload.value = ()
            finally:
                self._suspend -= 1
            self._shown(preview)
            self.status.value = html.escape(
                f"added {entry.name}: {entry.loader}, {entry.train_size} train / {entry.test_size} test"
            )

        self._job.start(work, self._report, done, self._fail, self._stopped)
        return self

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the preview (or an addition) is ready, or ``timeout`` seconds; returns
        :attr:`result` (``None`` if not ready, or after an error)."""
        self._job.wait(timeout)
        return self.result

    def stop(self) -> DataPanel:
        """Cancel the preview or addition in progress (a stopped addition leaves nothing in the store)."""
        self._job.stop()
        return self

    def close(self) -> None:
        self._job.stop()
        super().close()


__all__ = ["AUTO", "DataPanel"]

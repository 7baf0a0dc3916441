"""The workbench's one vocabulary: the words every face and the library use for the same thing.

``docs/glossary.md`` explains each word; this module holds what code needs of it:

* :data:`TERMS` — one :class:`Term` per setting a user chooses in more than one face, with the
  library keyword it maps to and how each face spells it (the app's URL parameter, the panels'
  keyword argument, the CLI option). A face spells a setting the library's way; a test walks the
  faces and checks each spelling against this table.
* :data:`EPOCH_METRICS` — the per-epoch metrics the training engine logs, in the order views offer
  them (loss terms add ``loss/<term>`` entries per run).
* :data:`STEP_METRICS` — the per-step metrics of a run's step log (``loss/<term>`` entries too).
* :data:`IMAGE_CHOICES` — how a CAM view chooses its images.
* :data:`DEFAULT_N_SAMPLES`, :data:`DOCTOR_N_SAMPLES` — how many test images an analysis view and
  the doctor examine unless told otherwise.

It imports nothing of the workbench: every floor may read it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: test images an analysis view (CAMs' pool, agreement, similarity, landscape, embedding) examines
DEFAULT_N_SAMPLES = 500
#: test images the student doctor examines (its thresholds were read off the clinic at this size)
DOCTOR_N_SAMPLES = 1000

#: per-epoch metrics of a run, as the engine logs them in ``metrics.json`` (``epochs[i][name]``);
#: ``agreement`` and ``kl_teacher_student`` only where the run has a teacher
EPOCH_METRICS: tuple[str, ...] = (
    "test_acc",
    "agreement",
    "kl_teacher_student",
    "ece",
    "test_loss",
    "train_acc",
    "train_loss",
    "lr",
    "seconds",
)

#: the prefix of a run's per-term training losses in its epoch records (``loss/kd``, ``loss/ce``)
LOSS_TERM_PREFIX = "loss/"

#: per-step metrics of a run, as the engine logs them in ``steps.jsonl`` every ``train.step_log_every``
#: steps (beside ``step``, ``epoch`` and ``time``); each weighted loss term adds a ``loss/<term>``
#: entry, named as in the epoch records
STEP_METRICS: tuple[str, ...] = ("loss", "lr", "batch_acc", "images_per_s")

#: how a CAM view chooses its images: by true class, where teacher and student disagree (teacher
#: right and student wrong first, most confident first), at random, or an uploaded image (faces that
#: take files only)
IMAGE_CHOICES: tuple[str, ...] = ("class", "disagreement", "random", "upload")

#: the kinds of run (``RunConfig.kind``): a teacher trained from labels, a student trained from
#: labels alone (no teacher), a student distilled from one or more teachers
RUN_KINDS: tuple[str, ...] = ("teacher", "student", "distill")


@dataclass(frozen=True)
class Term:
    """One setting and its spelling in every face.

    ``keyword``: the library's keyword argument (``checkpoint``); ``meaning``: one line;
    ``url``: the app's URL parameter (``None`` where the app has no such control); ``widget``: the
    panels' keyword argument / control name; ``cli``: the CLI option (``--checkpoint``).
    """

    keyword: str
    meaning: str
    url: str | None = None
    widget: str | None = None
    cli: str | None = None


TERMS: tuple[Term, ...] = (
    Term("store", "the run store: the folder holding every run and the job queue (default $WORKBENCH_RUNS or ./runs)",
         url=None, widget="store", cli="--runs"),
    Term("workspace", "a named group of runs in one store (a student's own list)",
         url="workspace", widget="workspace", cli="--workspace"),
    Term("run", "one training run of the store, by id (or a unique prefix where a person types it)",
         url="run", widget="run", cli="RUN_ID"),
    Term("checkpoint", "a saved state of a run: final, best, epoch_001, ...",
         url="checkpoint", widget="checkpoint", cli="--checkpoint"),
    Term("n_samples", "how many test images an analysis examines (a seeded subset)",
         url="n_samples", widget="n_samples", cli="--n-samples"),
    Term("seed", "the seed of the image subset (and of any random direction)",
         url="seed", widget="seed", cli="--seed"),
    Term("layer", "the student's layer an analysis reads, by module path; None = the method's default",
         url="layer", widget="layer", cli="--layer"),
    Term("teacher_layer", "the teacher's layer an analysis reads, by module path; None = the method's default",
         url="teacher_layer", widget="teacher_layer", cli="--teacher-layer"),
    Term("method", "a CAM method (gradcam, eigencam, ...) or a distillation method, by registry name",
         url="method", widget="method", cli="--method"),
    Term("target", "the class a CAM explains: the true label, the teacher's or the student's prediction",
         url="target", widget="target", cli=None),
    Term("pick", "how a CAM view chooses its images (see IMAGE_CHOICES)",
         url="pick", widget="pick", cli=None),
    Term("metric", "a per-epoch metric (see EPOCH_METRICS) or a landscape objective",
         url="metric", widget="metric", cli=None),
    Term("temperature", "the softmax temperature of soft labels (a run's kd temperature by default)",
         url="temperature", widget="temperature", cli=None),
    Term("n_probes", "random probe vectors of the Hutchinson Hessian-trace estimate (not images)",
         url="n_probes", widget=None, cli=None),
    Term("search", "words a run picker filters by (id, name, kind, model, method, dataset, tags, note; tag:x)",
         url="search", widget="search", cli="--search"),
    Term("device", "where models run: auto (CUDA when present), cpu, cuda, cuda:N, mps",
         url=None, widget="device", cli="--device"),
    Term("hide", "the controls a prepared link does not draw (URL parameters, comma-separated); the page uses their values",
         url="hide", widget=None, cli=None),
    Term("lock", "the controls a prepared link draws disabled, fixed to the link's values",
         url="lock", widget=None, cli=None),
)


def term(keyword: str) -> Term:
    """The :class:`Term` whose library keyword is ``keyword`` (``KeyError`` naming the known ones)."""
    for t in TERMS:
        if t.keyword == keyword:
            return t
    raise KeyError(f"{keyword!r}: not a term of the vocabulary; known: {', '.join(t.keyword for t in TERMS)}")


def url_to_keyword() -> dict[str, str]:
    """The app's URL parameters that name a term, mapped to the library keyword."""
    return {t.url: t.keyword for t in TERMS if t.url}


__all__ = [
    "DEFAULT_N_SAMPLES",
    "DOCTOR_N_SAMPLES",
    "EPOCH_METRICS",
    "IMAGE_CHOICES",
    "LOSS_TERM_PREFIX",
    "RUN_KINDS",
    "TERMS",
    "Term",
    "term",
    "url_to_keyword",
]

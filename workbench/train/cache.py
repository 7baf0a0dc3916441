"""Teacher-output cache: with a deterministic input pipeline, teacher logits and the features a
method asks for are computed once per run and then read by index slices on every step.

Two ways to fill it, with the same values up to float rounding of the batch composition:

* lazily (the engine's default, :class:`LazyTeacherCache`): the first epoch's own teacher
  forwards fill it, batch by batch, so training starts at once; later epochs read it;
* eagerly (:func:`build_teacher_cache`): one pass over the whole split before training.

Either way the teacher runs under ``torch.inference_mode()`` on an inference copy
(:func:`inference_teachers`): BatchNorm folded into the convolutions, weights channels-last when
the inputs are, the caller's teacher untouched. With a ``dtype`` (``distill.teacher_precision:
bfloat16``, see :func:`teacher_dtype`) the forwards are autocast to it and their outputs stored
as float32."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from workbench.devices import native_bfloat16
from workbench.models.fusion import fold_batchnorm
from workbench.models.taps import FeatureTaps
from workbench.runtime import CancelToken, Tracker


@dataclass
class TeacherCache:
    """Per-teacher logits ``(N, K)`` and features ``{path: (N, ...)}`` for a whole split."""

    logits: list[torch.Tensor]
    features: list[dict[str, torch.Tensor]]

    def lookup(self, index: torch.Tensor) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        """Teacher outputs for the split positions ``index``."""
        logits = [t.index_select(0, index) for t in self.logits]
        feats = [{k: v.index_select(0, index) for k, v in f.items()} for f in self.features]
        return logits, feats

    @property
    def nbytes(self) -> int:
        total = sum(t.numel() * t.element_size() for t in self.logits)
        total += sum(v.numel() * v.element_size() for f in self.features for v in f.values())
        return total


def teacher_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of fixed-teacher forwards for ``distill.teacher_precision``:
    ``None`` (plain float32) for ``float32``, :data:`torch.bfloat16` for ``bfloat16``, and for
    ``auto`` bfloat16 where ``device`` computes it natively
    (:func:`workbench.devices.native_bfloat16`), float32 elsewhere."""
    if precision == "float32":
        return None
    if precision == "bfloat16":
        if torch.device(device).type not in ("cpu", "cuda"):
            raise ValueError(
                f"distill.teacher_precision: bfloat16 autocast runs on cpu or cuda, not {torch.device(device).type}"
            )
        return torch.bfloat16
    if precision == "auto":
        return torch.bfloat16 if native_bfloat16(device) else None
    raise ValueError(f"distill.teacher_precision: expected float32, bfloat16 or auto, got {precision!r}")


def precision_name(dtype: torch.dtype | None) -> str:
    """``"float32"`` or the autocast dtype's name (``"bfloat16"``), for run records."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def teacher_forward(
    teachers: Sequence[nn.Module],
    x: torch.Tensor,
    paths: Sequence[str],
    *,
    dtype: torch.dtype | None = None,
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Run every teacher on ``x`` without gradients, capturing ``paths``. With ``dtype`` the
    forwards are autocast to it (mixed precision, as :func:`torch.autocast`) and the logits and
    features come back as float32."""
    logits, feats = [], []
    with torch.no_grad():
        for teacher in teachers:
            mixed = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
            with FeatureTaps(teacher, paths, detach=True) as taps, mixed:
                out = teacher(x)
            if dtype is None:
                logits.append(out)
                feats.append(dict(taps.features))
            else:
                logits.append(out.float())
                feats.append({k: v.float() for k, v in taps.features.items()})
    return logits, feats


def build_teacher_cache(
    teachers: Sequence[nn.Module],
    images: torch.Tensor,
    normalize: Callable[[torch.Tensor], torch.Tensor],
    paths: Sequence[str],
    batch_size: int,
    budget_mb: float,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
    dtype: torch.dtype | None = None,
) -> TeacherCache | None:
    """Compute the cache over ``images`` (uint8, on the target device), or None when the
    teachers' outputs for the whole split would exceed ``budget_mb``. ``dtype`` autocasts the
    forwards (see :func:`teacher_forward`).

    Reports one unit per batch through ``progress`` and checks ``cancel`` before every batch
    (raising :class:`workbench.runtime.Cancelled`; nothing is kept).
    """
    n = images.shape[0]
    tracker = Tracker(progress, cancel, total=cache_batches(n, batch_size), label="teacher cache")
    tracker.start()
    with torch.inference_mode():
        first_logits, first_feats = teacher_forward(teachers, normalize(images[:2]), paths, dtype=dtype)
    per_sample = sum(t[0].numel() * 4 for t in first_logits)
    per_sample += sum(v[0].numel() * 4 for f in first_feats for v in f.values())
    if per_sample * n > budget_mb * 2**20:
        return None
    logits: list[list[torch.Tensor]] = [[] for _ in teachers]
    feats: list[dict[str, list[torch.Tensor]]] = [{p: [] for p in paths} for _ in teachers]
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            out_l, out_f = teacher_forward(
                teachers, normalize(images[start : start + batch_size]), paths, dtype=dtype
            )
            for i in range(len(teachers)):
                logits[i].append(out_l[i].float())
                for p in paths:
                    feats[i][p].append(out_f[i][p].float())
            tracker.advance()
    return TeacherCache(
        logits=[torch.cat(chunks).clone() for chunks in logits],
        features=[{p: torch.cat(v).clone() for p, v in f.items()} for f in feats],
    )


def cache_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`build_teacher_cache` runs over ``n`` images."""
    return max(math.ceil(n / max(batch_size, 1)), 1)


def inference_teachers(
    teachers: Sequence[nn.Module],
    keep: Sequence[str] = (),
    *,
    channels_last: bool = False,
    example: torch.Tensor | None = None,
) -> list[nn.Module]:
    """Frozen eval-mode copies of ``teachers`` for forwards without gradients.

    Each copy has every ``Conv2d -> BatchNorm2d`` pair folded into the conv
    (:func:`workbench.models.fusion.fold_batchnorm`; the paths in ``keep``, the features a method
    reads, are never folded away) and, with ``channels_last``, its 4-D weights stored
    channels-last to match channels-last inputs. The copies compute the teachers' eval-mode
    function up to float rounding; ``teachers`` themselves are not modified. ``example`` (a couple
    of normalized training inputs) lets the pairs be found by the thread-safe autograd probe
    rather than an fx trace.
    """
    out = []
    for teacher in teachers:
        try:
            folded, _ = fold_batchnorm(teacher, keep=keep, example=example)
        except Exception:  # a model deepcopy or tracing cannot handle: a plain copy does the same job
            folded = copy.deepcopy(teacher).eval()
        for p in folded.parameters():
            p.requires_grad_(False)
        if channels_last:
            for t in [*folded.parameters(), *folded.buffers()]:
                if t.ndim == 4:
                    t.data = t.data.contiguous(memory_format=torch.channels_last)
        out.append(folded.eval())
    return out


class LazyTeacherCache:
    """A teacher cache filled on demand: :meth:`get` returns the teachers' outputs for a batch,
    computing (under inference mode) and storing the rows it does not hold yet, reading the
    stored rows otherwise. The first epoch's forwards fill it; every later read is an index slice.

    Storage for ``n`` rows is allocated on the first miss, once the per-sample size is known;
    when the outputs of the whole split would exceed ``budget_mb``, nothing is stored
    (:attr:`disabled`) and every call is a plain forward. ``dtype`` autocasts the forwards (see
    :func:`teacher_forward`). ``on_complete`` is called once with the cache when its last row is
    filled (the run store keeps it for later runs, :mod:`workbench.train.output_store`).
    """

    def __init__(
        self,
        teachers: Sequence[nn.Module],
        paths: Sequence[str],
        n: int,
        budget_mb: float,
        *,
        dtype: torch.dtype | None = None,
        on_complete: Callable[[TeacherCache], None] | None = None,
    ) -> None:
        self.teachers = list(teachers)
        self.dtype = dtype
        self.on_complete = on_complete
        self._rows_written = 0  # rows copied in so far (with repeats); the split is complete no earlier
        self.paths = list(paths)
        self.n = int(n)
        self.budget_mb = float(budget_mb)
        self.cache: TeacherCache | None = None
        self.filled: torch.Tensor | None = None
        self.disabled = False
        self.forwards = 0  # batches computed (misses), for tests and reports

    @property
    def complete(self) -> bool:
        """Whether every row of the split is stored."""
        return self.filled is not None and bool(self.filled.all())

    def _allocate(self, logits: list[torch.Tensor], feats: list[dict[str, torch.Tensor]]) -> None:
        per_sample = sum(t[0].numel() * 4 for t in logits)
        per_sample += sum(v[0].numel() * 4 for f in feats for v in f.values())
        if per_sample * self.n > self.budget_mb * 2**20:
            self.disabled = True
            return
        dev = logits[0].device
        self.cache = TeacherCache(
            logits=[torch.zeros(self.n, *t.shape[1:], device=dev) for t in logits],
            features=[
                {p: torch.zeros(self.n, *v.shape[1:], device=dev) for p, v in f.items()} for f in feats
            ],
        )
        self.filled = torch.zeros(self.n, dtype=torch.bool, device=dev)

    def get(
        self, x: torch.Tensor, index: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
        """Teacher logits and features for the inputs ``x`` at split positions ``index``."""
        if self.cache is not None and self.filled is not None:
            idx = index.to(self.filled.device)
            if bool(self.filled.index_select(0, idx).all()):
                return self.cache.lookup(idx)
        elif self.disabled:
            return teacher_forward(self.teachers, x, self.paths, dtype=self.dtype)
        with torch.inference_mode():
            logits, feats = teacher_forward(self.teachers, x, self.paths, dtype=self.dtype)
        self.forwards += 1
        if self.cache is None:
            self._allocate(logits, feats)
            if self.disabled:
                return [t.clone() for t in logits], [{k: v.clone() for k, v in f.items()} for f in feats]
        assert self.cache is not None and self.filled is not None
        idx = index.to(self.filled.device)
        with torch.no_grad():
            for i in range(len(self.teachers)):
                self.cache.logits[i].index_copy_(0, idx, logits[i].float())
                for p in self.paths:
                    self.cache.features[i][p].index_copy_(0, idx, feats[i][p].float())
            self.filled.index_fill_(0, idx, True)
        self._rows_written += idx.numel()
        if self.on_complete is not None and self._rows_written >= self.n and self.complete:
            done, self.on_complete = self.on_complete, None
            done(self.cache)
        return self.cache.lookup(idx)

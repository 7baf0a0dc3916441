"""Which images to explain: the one selector the app's CAM page and the CamExplorer panel share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from workbench.analysis._common import AnalysisError
from workbench.vocabulary import IMAGE_CHOICES

#: how images can be picked from a pool of test samples: the vocabulary's image choices, less
#: ``upload`` (an uploaded image is not in the pool; the faces that take files decode it themselves)
PICKS = tuple(choice for choice in IMAGE_CHOICES if choice != "upload")


def select_images(
    labels: torch.Tensor | np.ndarray | Sequence[int],
    pick: str,
    *,
    count: int,
    seed: int = 0,
    klass: int | None = None,
    gallery: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Positions (into ``labels``) of at most ``count`` images chosen by ``pick``.

    - ``class``: the first ``count`` images whose label is ``klass``, in pool order;
    - ``random``: ``count`` positions of a permutation seeded by ``seed`` (``torch.randperm``), sorted;
    - ``disagreement``: the first ``count`` of ``gallery``, the ordered positions of
      :func:`workbench.analysis.agreement_report`'s disagreement gallery (teacher right and student
      wrong first, most confident first).

    Raises a one-line :class:`AnalysisError` naming the choice when nothing matches.
    """
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n, k = len(y), int(count)
    if k < 1:
        raise AnalysisError(f"count: expected an integer >= 1, got {count!r}")
    if pick == "class":
        if klass is None:
            raise AnalysisError("class: name the class to pick images of")
        chosen = np.flatnonzero(y == int(klass))[:k]
        if not chosen.size:
            raise AnalysisError(f"class {klass}: no sample of this class among the {n} drawn")
        return chosen
    if pick == "random":
        gen = torch.Generator().manual_seed(int(seed))
        return np.sort(torch.randperm(n, generator=gen)[:k].numpy())
    if pick == "disagreement":
        chosen = np.asarray([] if gallery is None else gallery, dtype=np.int64)[:k]
        if not chosen.size:
            raise AnalysisError(f"disagreement: teacher and student agree on all {n} samples drawn")
        return chosen
    raise AnalysisError(f"images: unknown choice {pick!r}; known: {', '.join(PICKS)}")


__all__ = ["PICKS", "select_images"]

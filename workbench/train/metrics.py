"""Per-epoch test metrics of the engine: accuracy, loss, ECE, agreement and KL with the teacher.

ECE and KL come from :mod:`workbench.metrics`, the implementation the analyses use too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from workbench.metrics import expected_calibration_error, kl_teacher_student

__all__ = ["expected_calibration_error", "kl_teacher_student", "logit_metrics"]


def logit_metrics(
    student_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
) -> dict[str, float]:
    """Test-split metrics of one model, with teacher agreement where a teacher is given."""
    probs = F.softmax(student_logits.float(), dim=1)
    out = {
        "test_acc": float((student_logits.argmax(1) == labels).float().mean()),
        "test_loss": float(F.cross_entropy(student_logits.float(), labels)),
        "ece": expected_calibration_error(probs, labels),
    }
    if teacher_logits is not None:
        out["agreement"] = float((student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean())
        out["kl_teacher_student"] = float(
            kl_teacher_student(teacher_logits.float(), student_logits.float()).mean()
        )
    return out

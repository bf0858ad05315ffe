"""Classification scores for posture/action recognition: confusion matrix, precision, recall, F1.

Labels are integer class indices 0..C-1. Conventions follow scikit-learn: confusion rows are true
classes and columns predicted ones; a ratio whose denominator is 0 (precision of a class never
predicted, recall of a class absent from the truth, F1 when both are 0) is 0, like
``zero_division=0``. Macro averages weigh every class of the C classes equally, classes absent from
the data included (as scikit-learn with ``labels=range(C)``); weighted averages weigh classes by
their support (number of true samples).
"""
from __future__ import annotations

import numpy as np

from posekit.errors import PosekitError


def _check_labels(y_true, y_pred, num_classes):
    try:
        t = np.asarray(y_true, dtype=float)
        p = np.asarray(y_pred, dtype=float)
    except (TypeError, ValueError):
        raise PosekitError("classification: labels must be integer class indices") from None
    if t.ndim != 1 or p.shape != t.shape:
        raise PosekitError(f"classification: y_true {t.shape} and y_pred {p.shape} must be 1-D "
                           "arrays of the same length")
    if t.size == 0:
        raise PosekitError("classification: no samples")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any() or (arr < 0).any():
            raise PosekitError(f"classification: {name} must hold class indices 0, 1, 2, ...")
    t, p = t.astype(np.int64), p.astype(np.int64)
    top = int(max(t.max(), p.max())) + 1
    if num_classes is None:
        num_classes = top
    elif int(num_classes) < top:
        raise PosekitError(f"classification: a label {top - 1} is out of range for "
                           f"num_classes={num_classes}")
    return t, p, int(num_classes)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """(C, C) counts: entry [i, j] is the number of samples of class i predicted as class j."""
    t, p, c = _check_labels(y_true, y_pred, num_classes)
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c)


def accuracy(y_true, y_pred) -> float:
    """Share of samples predicted correctly."""
    t, p, _ = _check_labels(y_true, y_pred, None)
    return float(np.mean(t == p))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(num.shape), where=den > 0)


def classification_report(y_true, y_pred, num_classes: int | None = None) -> dict:
    """Per-class precision/recall/F1/support, their macro and weighted means, accuracy and the
    confusion matrix (rows true, columns predicted)."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    precision = _ratio(tp, cm.sum(axis=0).astype(float))
    recall = _ratio(tp, support.astype(float))
    f1 = _ratio(2.0 * precision * recall, precision + recall)
    weights = support / support.sum()
    return {
        "accuracy": float(tp.sum() / cm.sum()),
        "precision": precision, "recall": recall, "f1": f1, "support": support,
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                  "f1": float(f1.mean())},
        "weighted": {"precision": float(weights @ precision), "recall": float(weights @ recall),
                     "f1": float(weights @ f1)},
        "confusion": cm,
    }


__all__ = ["confusion_matrix", "accuracy", "classification_report"]

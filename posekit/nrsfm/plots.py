"""Figures of NRSfM results (matplotlib, Agg canvas: no display needed, pyplot state untouched).

* :func:`plot_frame_views`: one frame, reconstruction against ground truth from three viewpoints,
  "o" for the real points and "+" for the reconstructed ones, as in the MCM-RR article's Figure 2.
* :func:`plot_error_curves`: per-frame error of several methods along a sequence.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from posekit.errors import PosekitError
from posekit.metrics.nrsfm import align_shapes

VIEWS = ((15.0, -70.0), (15.0, 20.0), (85.0, -90.0))
"""(elevation, azimuth) in degrees of the three panels: two side views 90 degrees apart and one
from above."""


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def plot_frame_views(reconstruction, ground_truth, path, *, bones=None, views=VIEWS,
                     align: bool = True, up: int | None = None, title: str | None = None) -> Path:
    """Save one frame (P, 3) of a reconstruction beside the ground truth from several viewpoints.

    ``align`` first moves the reconstruction onto the ground truth (rotation or reflection +
    translation, as the error measures do); bones (B, 2) joint pairs are drawn as lines; ``up`` is
    the coordinate drawn vertically (None: the one along which the ground truth is longest).
    """
    rec = np.asarray(reconstruction, dtype=float)
    gt = np.asarray(ground_truth, dtype=float)
    if rec.ndim != 2 or rec.shape[-1] != 3 or rec.shape != gt.shape:
        raise PosekitError(f"plot_frame_views: expected two (P, 3) shapes, got {rec.shape} and "
                           f"{gt.shape}")
    if align:
        rec = align_shapes(rec[None], gt[None])[0]
    if up is None:
        up = int(np.argmax(np.ptp(gt, axis=0)))
    order = [a for a in range(3) if a != up] + [up]
    rec, gt = rec[:, order], gt[:, order]
    pairs = np.zeros((0, 2), dtype=int) if bones is None else np.asarray(bones, dtype=int).reshape(-1, 2)
    fig = _figure(3.6 * len(views), 3.9)
    centre = gt.mean(axis=0)
    radius = max(np.abs(np.concatenate([gt, rec]) - centre).max(), 1e-9)
    for i, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), i + 1, projection="3d")
        for a, b in pairs:
            ax.plot(*gt[[a, b]].T, color="0.55", linewidth=1.0)
            ax.plot(*rec[[a, b]].T, color="tab:red", linewidth=1.0, alpha=0.7)
        ax.scatter(*gt.T, marker="o", facecolors="none", edgecolors="k", s=28, label="real")
        ax.scatter(*rec.T, marker="+", color="tab:red", s=40, label="reconstructed")
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
            setter(c - radius, c + radius)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_xticklabels([])
        ax.set_yticklabels([])
        ax.set_zticklabels([])
        ax.set_title(f"elev {elev:.0f}, azim {azim:.0f}", fontsize=9)
        if i == 0:
            ax.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.02, top=0.88, wspace=0.0)
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_error_curves(errors: dict, path, *, ylabel: str, title: str | None = None) -> Path:
    """Save per-frame errors {method: (F,)} as one curve per method against the frame index."""
    if not errors:
        raise PosekitError("plot_error_curves: no errors to plot")
    fig = _figure(8.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for method, values in errors.items():
        values = np.asarray(values, dtype=float)
        if values.ndim != 1:
            raise PosekitError(f"plot_error_curves: errors of {method!r} must be one value per "
                               f"frame, got shape {values.shape}")
        ax.plot(np.arange(len(values)), values, label=f"{method} (mean {values.mean():.3g})",
                linewidth=1.2)
    ax.set_xlabel("test frame")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


__all__ = ["VIEWS", "plot_frame_views", "plot_error_curves"]

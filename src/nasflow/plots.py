"""Plots of what a search measured, as PNG bytes (`nasflow.diagram` draws architectures).

Drawn with matplotlib's object-oriented API (a `Figure` on an Agg canvas): no pyplot, no
window and no global backend, so importing or calling this changes nothing in the
process that imports it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nasflow.errors import NasflowError


def render_alpha_heatmap(records: Sequence[Mapping[str, Any]], ops: Sequence[str]) -> bytes:
    """A PNG of each epoch's op weights: one panel per cell type, a row per (edge, op),
    a column per epoch.

    The colour scale spans the weights' own range (shared by the panels), not [0, 1]: a
    short DARTS search moves the softmax weights only a little away from uniform.

    Args:
        records: A one-shot search's per-epoch records, each with ``epoch`` and
            ``alphas`` (per cell type, [edge][op] op weights).
        ops: The names of the op weights' columns.
    """
    if not records:
        raise NasflowError("no epochs to draw a heat map of")
    cells = list(records[0]["alphas"])
    edges = {cell: len(records[0]["alphas"][cell]) for cell in cells}
    rows = max(edges.values()) * len(ops)
    epochs = len(records)
    figure = Figure(
        figsize=(max(3.0, 1.2 + 0.35 * epochs) * len(cells) + 2.0, 1.2 + 0.13 * rows),
        dpi=100,
        layout="constrained",  # room for the row labels and the colour bar
    )
    canvas = FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(cells), squeeze=False)[0]
    # Per cell type, rows edge-major (edge, op) and a column per epoch.
    matrices = {
        cell: np.array(
            [[value for row in record["alphas"][cell] for value in row] for record in records]
        ).T
        for cell in cells
    }
    low = min(float(m.min()) for m in matrices.values())
    high = max(float(m.max()) for m in matrices.values())
    high = max(high, low + 1e-6)
    image = None
    for ax, cell in zip(axes, cells, strict=True):
        image = ax.imshow(matrices[cell], aspect="auto", cmap="viridis", vmin=low, vmax=high)
        ax.set_title(f"{cell} op weights")
        ax.set_xlabel("epoch")
        ax.set_xticks(range(epochs))
        ax.set_xticklabels([str(record["epoch"]) for record in records], fontsize=6)
        labels = [f"e{edge} {op}" for edge in range(edges[cell]) for op in ops]
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=5)
        for edge in range(1, edges[cell]):
            ax.axhline(edge * len(ops) - 0.5, color="white", linewidth=0.5)
    assert image is not None
    figure.colorbar(image, ax=list(axes), fraction=0.04, label="op weight")
    out = io.BytesIO()
    canvas.print_png(out)
    return out.getvalue()


def render_pareto(
    points: np.ndarray, on_front: np.ndarray, names: Sequence[str], maximize: Sequence[bool]
) -> bytes:
    """A PNG of every candidate in the first two objectives, the front joined up and
    marked; the axes say which way is better."""
    if len(points) == 0:
        raise NasflowError("no candidate to draw a front of")
    figure = Figure(figsize=(6, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(points[:, 1], points[:, 0], s=14, color="0.6", label="candidates")
    front = points[on_front]
    front = front[np.argsort(front[:, 1])]
    axes.step(front[:, 1], front[:, 0], where="post", color="tab:red", linewidth=1)
    axes.scatter(front[:, 1], front[:, 0], s=30, color="tab:red", label=f"front ({len(front)})")
    way = {True: "higher is better", False: "lower is better"}
    axes.set_xlabel(f"{names[1]} ({way[bool(maximize[1])]})")
    axes.set_ylabel(f"{names[0]} ({way[bool(maximize[0])]})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return png.getvalue()

"""Draw an architecture's graphs (`SearchSpace.graphs`) as SVG or PNG with matplotlib.

No graphviz binary or other system package is needed. The layout is the one cells are
usually drawn in: nodes left to right in their order (a cell's inputs, its intermediate
nodes, its output), an edge between neighbours drawn straight and longer edges as arcs,
alternately above and below, the op name written on each edge.

Drawn with matplotlib's object-oriented API (a `Figure` on an Agg canvas): no pyplot and
no global backend, so drawing works without a display and leaves the importing process's
matplotlib settings alone.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nasflow.artifacts import write_bytes_atomic
from nasflow.errors import NasflowError
from nasflow.search_spaces.base import Graph

FORMATS = ("svg", "png")
_ROW_HEIGHT = 2.6  # inches per graph


def render(graphs: Sequence[Graph], fmt: str = "svg") -> bytes:
    """The graphs stacked top to bottom in one figure, as SVG or PNG bytes."""
    if fmt not in FORMATS:
        raise NasflowError(f"diagram format '{fmt}' is not supported; use one of {FORMATS}")
    width = max(_width(graph) for graph in graphs)
    figure = Figure(figsize=(width, _ROW_HEIGHT * len(graphs)))
    FigureCanvasAgg(figure)  # measures the text (`_draw`) and writes PNG; SVG has its own
    axes = figure.subplots(len(graphs), 1, squeeze=False)
    for ax, graph in zip(axes[:, 0], graphs, strict=True):
        _draw(ax, graph)
    figure.tight_layout()
    buffer = io.BytesIO()
    # metadata without a date, so the same architecture always gives the same SVG.
    metadata = {"Date": None} if fmt == "svg" else {}
    figure.savefig(buffer, format=fmt, dpi=110, metadata=metadata)
    return buffer.getvalue()


def save(graphs: Sequence[Graph], path: str | Path) -> Path:
    """Write the diagram; the format comes from the suffix (.svg or .png)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise NasflowError(f"diagram path {path}: the suffix must be .svg or .png")
    write_bytes_atomic(path, render(graphs, fmt))
    return path


def _width(graph: Graph) -> float:
    """Inches: room between neighbouring nodes for the longest node or edge label."""
    labels = [*graph.nodes, *(label for _, _, label in graph.edges)]
    longest = max((len(label) for label in labels), default=1)
    return max(6.0, len(graph.nodes) * (0.45 + 0.085 * longest))


def _draw(ax: Axes, graph: Graph) -> None:
    ax.set_title(graph.title, fontsize=11, loc="left")
    count = len(graph.nodes)
    ax.set_xlim(-0.6, count - 0.4)
    ax.set_ylim(-1.3, 1.3)
    ax.axis("off")
    box = {"boxstyle": "round,pad=0.35", "facecolor": "#eef3fb", "edgecolor": "#36608f"}
    texts = [
        ax.text(x, 0, node, ha="center", va="center", fontsize=9, bbox=box, zorder=3)
        for x, node in enumerate(graph.nodes)
    ]
    # The boxes' extents in data units, so that edges start and end on their borders.
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
    to_data = ax.transData.inverted()
    pad = 0.35 * 9 * ax.figure.dpi / 72 + 2  # the box's padding (0.35 of the font size), px
    extents = []
    for text in texts:
        corners = to_data.transform(text.get_window_extent(renderer).expanded(1, 1).padded(pad))
        extents.append(((corners[1][0] - corners[0][0]) / 2, (corners[1][1] - corners[0][1]) / 2))
    for i, (src, dst, label) in enumerate(graph.edges):
        if not (0 <= src < count and 0 <= dst < count):
            raise ValueError(f"edge {src}->{dst} of '{graph.title}' has no such node")
        span = dst - src
        if abs(span) <= 1:  # neighbours: straight, border to border
            side = 1 if span > 0 else -1
            start = (src + side * extents[src][0], 0.0)
            end = (dst - side * extents[dst][0], 0.0)
            rad = 0.0
        else:  # longer edges arc from the top or bottom, alternately, wider the further
            up = 1 if i % 2 else -1
            start, end = (src, up * extents[src][1]), (dst, up * extents[dst][1])
            rad = -up * (0.15 + 0.05 * abs(span)) * (1 if span > 0 else -1)
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#555555",
                "lw": 1.0,
                "shrinkA": 1,
                "shrinkB": 1,
                "connectionstyle": f"arc3,rad={rad}",
            },
            zorder=1,
        )
        if label:
            # matplotlib's arc3 puts the control point at rad * (dy, -dx) from the chord's
            # middle, in display units; the curve passes half-way to it.
            (x0, y0), (x1, y1) = ax.transData.transform([start, end])
            dx, dy = x1 - x0, y1 - y0
            display = ((x0 + x1) / 2 + rad * dy / 2, (y0 + y1) / 2 - rad * dx / 2)
            mid_x, mid_y = to_data.transform(display)
            white = {"boxstyle": "square,pad=0.1", "facecolor": "white", "lw": 0}
            ax.text(mid_x, mid_y, label, ha="center", va="center", fontsize=7, zorder=2, bbox=white)
    # 7-point text fits about 14 characters per inch of the axes' width.
    columns = int(ax.get_window_extent().width / ax.figure.dpi * 14)
    notes = [line for note in graph.notes for line in textwrap.wrap(note, columns)]
    for k, line in enumerate(reversed(notes)):
        ax.text(-0.5, -1.25 + 0.18 * k, line, fontsize=7, color="#666666", va="bottom")

"""Point labels that overlap neither each other nor any marker, checked on the rendered text.

matplotlib has no label placement of its own (``annotate`` puts text where it is told), and the text's size is
known only once it is laid out by the renderer. So each label tries offsets around its point, nearest first,
and keeps the first whose rendered bounding box (``Text.get_window_extent``) stays inside the axes and clears
every marker, every label already placed and the given obstacles (a legend). A label that lands away from its
point gets a thin leader line. Place labels after the layout is final (after ``tight_layout``, with fixed axis
limits) and save without ``bbox_inches="tight"``, so what was checked is what is drawn.
"""
from __future__ import annotations

import math
from typing import Sequence

from matplotlib.axes import Axes
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

__all__ = ["place_labels", "marker_boxes", "segment_boxes", "text_box", "overlaps", "Point"]

Point = tuple[float, float, str, float]      # x, y (data), label, marker area in points² (scatter ``s``)
_ANGLES = (0, 180, 35, -35, 145, -145, 90, -90, 15, -15, 165, -165, 60, -60, 120, -120)
_PAD = 2.0                                    # pixels kept clear around every label


def text_box(text: Text, renderer) -> Bbox:
    """The rendered extent of a label's text alone (an annotation's leader line is not part of it): the
    annotation's position is brought up to date first (``update_positions``, as ``draw`` does)."""
    if isinstance(text, Annotation):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def marker_boxes(ax: Axes, points: Sequence[Point]) -> list[Bbox]:
    """Display-space square around each marker (scatter sizes are areas in points²)."""
    out = []
    for x, y, _, area in points:
        cx, cy = ax.transData.transform((x, y))
        r = math.sqrt(area) / 2 * ax.figure.dpi / 72 + 1.0
        out.append(Bbox.from_extents(cx - r, cy - r, cx + r, cy + r))
    return out


def overlaps(box: Bbox, others: Sequence[Bbox], pad: float = 0.0) -> bool:
    grown = box.padded(pad) if pad else box
    return any(grown.overlaps(o) for o in others)


def _align(angle: float) -> tuple[str, str]:
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return ("left" if c > 0.3 else "right" if c < -0.3 else "center",
            "bottom" if s > 0.3 else "top" if s < -0.3 else "center")


def segment_boxes(ax: Axes, xs: Sequence[float], ys: Sequence[float]) -> list[Bbox]:
    """Display-space boxes of the segments of a polyline given in data coordinates (exact for the horizontal
    and vertical segments of step lines and error bars)."""
    pts = ax.transData.transform(list(zip(xs, ys)))
    return [Bbox.from_extents(min(a[0], b[0]) - 1, min(a[1], b[1]) - 1, max(a[0], b[0]) + 1, max(a[1], b[1]) + 1)
            for a, b in zip(pts[:-1], pts[1:])]


def place_labels(ax: Axes, points: Sequence[Point], obstacles: Sequence[Bbox] = (), soft: Sequence[Bbox] = (),
                 fontsize: float = 7.5, rings: int = 14, step: float = 7.0) -> list[Annotation]:
    """Annotate every point with its label where nothing overlaps (see the module docstring); returns the
    annotations in the order of ``points``. ``obstacles`` (a legend) count like markers; ``soft`` ones (lines,
    error bars) are avoided when possible. Falls back to the least crowded candidate when none is clear."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = marker_boxes(ax, points)
    placed: list[Bbox] = []
    out = []
    for x, y, label, area in points:
        r0 = math.sqrt(area) / 2 + 3.0                       # points: just outside the marker
        ann = ax.annotate(label, (x, y), textcoords="offset points", xytext=(r0, 0), fontsize=fontsize,
                          annotation_clip=False, zorder=5)
        best, best_hits = None, math.inf
        for ring in range(rings):
            r = r0 + ring * step
            for angle in _ANGLES:
                ann.set_position((r * math.cos(math.radians(angle)), r * math.sin(math.radians(angle))))
                ann.set_horizontalalignment(_align(angle)[0])
                ann.set_verticalalignment(_align(angle)[1])
                box = text_box(ann, renderer)
                inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
                grown = box.padded(_PAD)
                hits = (100 * (not inside) + 10 * sum(grown.overlaps(o) for o in [*markers, *placed, *obstacles])
                        + sum(grown.overlaps(o) for o in soft))
                if hits < best_hits:
                    best, best_hits = (ann.get_position(), _align(angle), ring), hits
                if hits == 0:
                    break
            if best_hits == 0:
                break
        (pos, (ha, va), ring) = best
        ann.remove()
        arrow = {"arrowstyle": "-", "lw": 0.6, "color": "0.35", "shrinkA": 0, "shrinkB": r0 - 2} if ring else None
        ann = ax.annotate(label, (x, y), textcoords="offset points", xytext=pos, fontsize=fontsize, ha=ha, va=va,
                          annotation_clip=False, zorder=5, arrowprops=arrow)
        placed.append(text_box(ann, renderer))
        out.append(ann)
    return out

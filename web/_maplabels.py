"""Where the namespace map puts each edge's label: beside its arrow, never on an arrow,
a namespace's box or another label."""

from __future__ import annotations

import math

__all__ = ["LABEL_H", "Box", "Curve", "LabelPlacer"]

Box = tuple[float, float, float, float]  # left, top, right, bottom
Curve = tuple[float, float, float, float, float, float]  # start, control point, end

# A label is two lines of text; its block's height.
LABEL_H = 28
# Distances from the curve's middle tried, nearest first.
GAPS = (9.0, 30.0, 52.0)
# How many points of each curve are tested against a label's box.
SAMPLES = 160


def _points(curve: Curve) -> list[tuple[float, float]]:
    sx, sy, qx, qy, ex, ey = curve
    points = []
    for step in range(SAMPLES + 1):
        t = step / SAMPLES
        a, b, c = (1 - t) ** 2, 2 * t * (1 - t), t * t
        points.append((a * sx + b * qx + c * ex, a * sy + b * qy + c * ey))
    return points


def _box(x: float, top: float, anchor: str, width: float) -> Box:
    left = x if anchor == "start" else x - width if anchor == "end" else x - width / 2
    return left, top, left + width, top + LABEL_H


def _overlap(a: Box, b: Box) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0.0


def _beside(
    curve: Curve, toward: tuple[float, float], gap: float, anchor: str | None = None
) -> tuple[float, float, str]:
    """``(x, top, text-anchor)`` of a label ``gap`` away from the curve's middle, on the
    side of the curve that ``toward`` (a direction from the chord's middle) points to."""
    sx, sy, qx, qy, ex, ey = curve
    px, py = (sx + 2 * qx + ex) / 4, (sy + 2 * qy + ey) / 4
    nx, ny = toward
    x, y = px + nx * gap, py + ny * gap
    # Beside a steep curve the text starts (or ends) at it; beside a flat one it is
    # centered above or below it.
    anchor = anchor or ("start" if nx > 0.35 else "end" if nx < -0.35 else "middle")
    if ny > 0.35:
        top = y
    elif ny < -0.35:
        top = y - LABEL_H
    else:
        top = y - LABEL_H / 2
    return x, top, anchor


class LabelPlacer:
    """Places the labels of a map's edges one by one, each where it covers no arrow, no
    namespace box and no label placed before it (or, failing that, the least of them)."""

    def __init__(self, curves: list[Curve], nodes: list[Box]) -> None:
        self.points = [point for curve in curves for point in _points(curve)]
        self.taken: list[Box] = list(nodes)

    def place(self, curve: Curve, width: float) -> tuple[float, float, str]:
        """Where the label of ``curve`` (``width`` pixels wide) goes."""
        sx, sy, qx, qy, ex, ey = curve
        nx, ny = qx - (sx + ex) / 2, qy - (sy + ey) / 2
        norm = math.hypot(nx, ny) or 1
        bend = (nx / norm, ny / norm)
        # Nearest first, the bend side first, the anchor that suits the side's slope first.
        options = [
            (side, gap, anchor)
            for gap in GAPS
            for side in (bend, (-bend[0], -bend[1]))
            for anchor in (None, "start", "end", "middle")
        ]
        candidates = [
            (_beside(curve, side, gap, anchor), rank)
            for rank, (side, gap, anchor) in enumerate(options)
        ]

        def cost(candidate: tuple[tuple[float, float, str], int]) -> float:
            (x, top, anchor), rank = candidate
            box = _box(x, top, anchor, width)
            padded = (box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4)
            crossings = sum(
                1
                for px, py in self.points
                if padded[0] <= px <= padded[2] and padded[1] <= py <= padded[3]
            )
            covered = sum(_overlap(box, other) for other in self.taken)
            return 1000 * crossings + covered + rank  # the nearest, bend side first

        (x, top, anchor), _ = min(candidates, key=cost)
        self.taken.append(_box(x, top, anchor, width))
        return x, top, anchor

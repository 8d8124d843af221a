"""The namespace map as server-side SVG: namespaces on a circle, calls as arrows, each
labeled beside its arrow (``_maplabels``)."""

from __future__ import annotations

import math
from html import escape

from tracer.query import MapEdge, NamespaceMap

from ._maplabels import Curve, LabelPlacer

__all__ = ["render_map_svg"]

WIDTH, HEIGHT = 860, 560
NODE_W, NODE_H = 150, 44


def _hue(namespace: str) -> int:
    return sum(ord(char) * 31 for char in namespace) % 360


def _fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _label(edge: MapEdge) -> str:
    return (
        f"{edge.calls} call{'s' if edge.calls != 1 else ''} · "
        f"{edge.error_rate:.0%} err · p95 {_fmt_ms(edge.p95_ms)}"
    )


def _border_point(cx: float, cy: float, tx: float, ty: float) -> tuple[float, float]:
    """Where the line from a node's center towards (tx, ty) leaves its box."""
    dx, dy = tx - cx, ty - cy
    if dx == 0 and dy == 0:
        return cx, cy
    scale = min(
        (NODE_W / 2 + 6) / abs(dx) if dx else math.inf,
        (NODE_H / 2 + 6) / abs(dy) if dy else math.inf,
    )
    return cx + dx * scale, cy + dy * scale


def _marker(marker_id: str, color: str) -> str:
    return (
        f'<marker id="{marker_id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="12" '
        'markerHeight="12" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
    )


HALO = 'stroke="#fff" paint-order="stroke"'


def render_map_svg(graph: NamespaceMap) -> str:
    """An SVG picture of ``graph``; every text is escaped."""
    names = graph.namespaces
    count = max(len(names), 1)
    radius = min(WIDTH, HEIGHT) / 2 - 70
    centers: dict[str, tuple[float, float]] = {}
    for index, name in enumerate(names):
        angle = -math.pi / 2 + 2 * math.pi * index / count
        centers[name] = (
            WIDTH / 2 + radius * 1.35 * math.cos(angle),
            HEIGHT / 2 + radius * math.sin(angle),
        )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ns-map" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="Namespace map">',
        "<defs>" + _marker("arrow", "#5d6678") + _marker("arrow-err", "#c0392b") + "</defs>",
    ]
    if not names:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#5d6678">'
            "No namespaces linked yet.</text>"
        )
    max_calls = max((edge.calls for edge in graph.edges), default=1)
    curves: list[Curve] = []
    for edge in graph.edges:
        (x1, y1), (x2, y2) = centers[edge.caller], centers[edge.callee]
        # Bend every edge to its left so A->B and B->A stay apart.
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy) or 1
        bend = 40
        qx, qy = mx - dy / length * bend, my + dx / length * bend
        sx, sy = _border_point(x1, y1, qx, qy)
        ex, ey = _border_point(x2, y2, qx, qy)
        curves.append((sx, sy, qx, qy, ex, ey))
    labels = LabelPlacer(
        curves,
        [
            (cx - NODE_W / 2, cy - NODE_H / 2, cx + NODE_W / 2, cy + NODE_H / 2)
            for cx, cy in centers.values()
        ],
    )
    for edge, curve in zip(graph.edges, curves, strict=True):
        sx, sy, qx, qy, ex, ey = curve
        width = 1.5 + 4 * math.log1p(edge.calls) / math.log1p(max_calls)
        failing = edge.errors > 0
        color = "#c0392b" if failing else "#5d6678"
        kinds = ", ".join(kind.replace("_", " ") for kind in edge.kinds)
        # Text width estimated from its length: 12 px bold and 11 px characters.
        lx, ly, anchor = labels.place(curve, max(len(_label(edge)) * 7.0, len(kinds) * 6.2))
        title = escape(f"{edge.caller} → {edge.callee} ({', '.join(edge.kinds)}): {_label(edge)}")
        parts.append(
            f'<g class="edge{" edge-error" if failing else ""}" '
            f'data-caller="{escape(edge.caller)}" data-callee="{escape(edge.callee)}">'
            f"<title>{title}</title>"
            f'<path d="M{sx:.1f},{sy:.1f} Q{qx:.1f},{qy:.1f} {ex:.1f},{ey:.1f}" fill="none" '
            f'stroke="{color}" stroke-width="{width:.1f}" '
            f'marker-end="url(#{"arrow-err" if failing else "arrow"})"/>'
            f'<text x="{lx:.1f}" y="{ly + 11:.1f}" text-anchor="{anchor}" class="edge-label" '
            f'fill="{color}" stroke-width="4" {HALO}>{escape(_label(edge))}</text>'
            f'<text x="{lx:.1f}" y="{ly + 25:.1f}" text-anchor="{anchor}" class="edge-kind" '
            f'fill="#5d6678" stroke-width="3" {HALO}>{escape(kinds)}</text>'
            "</g>"
        )
    for name in names:
        cx, cy = centers[name]
        hue = _hue(name)
        parts.append(
            f'<g class="ns-node" data-namespace="{escape(name)}">'
            f'<rect x="{cx - NODE_W / 2:.1f}" y="{cy - NODE_H / 2:.1f}" width="{NODE_W}" '
            f'height="{NODE_H}" rx="22" fill="hsl({hue} 70% 90%)" stroke="hsl({hue} 50% 55%)" '
            'stroke-width="2"/>'
            f'<text x="{cx:.1f}" y="{cy + 5:.1f}" text-anchor="middle" font-weight="600" '
            f'fill="hsl({hue} 60% 22%)">{escape(name)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)

"""Reading call trees from the database: the call-graph rules, trees, search, map, spans.

:mod:`tracer.query._graph` is the one place that decides who called a run, which run
roots a tree and which runs a tree holds; everything else asks it.
:mod:`tracer.query._visibility` is the one place that decides what a viewer may see.
"""

from ._figures import TreeFigures, failure_origins, figures_of
from ._graph import (
    MAX_DEPTH,
    Caller,
    CallGraph,
    chunks,
    link_matches_call,
    precedence,
    root_condition,
)
from ._map import (
    EdgeSample,
    MapEdge,
    NamespaceMap,
    bucket_latency,
    cross_namespace_calls,
    latency_bucket,
    namespace_map,
)
from ._search import PREFIX_WILDCARD, TraceFilter, TracePage, TraceSummary, search_traces
from ._settle import SETTLED_BY, Outcome, settle
from ._spans import NODE_SPAN_LIMIT, SpanInfo, match_node_spans, spans_for_node, spans_for_tree
from ._tree import TreeBuilder, TreeNode, Wait, build_tree, iso_time
from ._visibility import EVERY_NAMESPACE, HIDDEN_NAMESPACE, Scope, Visible, token_namespace

__all__ = [
    "EVERY_NAMESPACE",
    "HIDDEN_NAMESPACE",
    "MAX_DEPTH",
    "NODE_SPAN_LIMIT",
    "PREFIX_WILDCARD",
    "SETTLED_BY",
    "CallGraph",
    "Caller",
    "EdgeSample",
    "MapEdge",
    "NamespaceMap",
    "Outcome",
    "Scope",
    "SpanInfo",
    "TraceFilter",
    "TracePage",
    "TraceSummary",
    "TreeBuilder",
    "TreeFigures",
    "TreeNode",
    "Visible",
    "Wait",
    "bucket_latency",
    "build_tree",
    "chunks",
    "cross_namespace_calls",
    "failure_origins",
    "figures_of",
    "iso_time",
    "latency_bucket",
    "link_matches_call",
    "match_node_spans",
    "namespace_map",
    "precedence",
    "root_condition",
    "search_traces",
    "settle",
    "spans_for_node",
    "spans_for_tree",
    "token_namespace",
]

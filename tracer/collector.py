"""Run the collector in your own process and read call trees from its store."""

from ._service import Collector, ServeSettings, run_collector, serve_forever
from ._tree import TreeNode, build_tree

__all__ = ["Collector", "ServeSettings", "TreeNode", "build_tree", "run_collector", "serve_forever"]

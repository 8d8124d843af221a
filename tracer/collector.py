"""Run the collector in your own process and read call trees from its store
(``collector.store.tree(namespace, workflow_id, scope=None)``: ``None`` sees every
namespace)."""

from ._service import Collector, ServeSettings, run_collector, serve_forever
from .query import TreeNode
from .store import Store

__all__ = ["Collector", "ServeSettings", "Store", "TreeNode", "run_collector", "serve_forever"]

"""lgmon's client SDK: report LangGraph runs to an lgmon server.

::

    from lgmon_client import LangGraphMonitor

    monitor = LangGraphMonitor()  # LGMON_URL and LGMON_API_KEY from the environment
    graph.invoke(state, config={"callbacks": [monitor], "metadata": {"user_id": "u-42"}})

This package must not import Django or any lgmon server module.
"""

from lgmon_client.callback import LangGraphMonitor
from lgmon_client.decorators import monitor_performance
from lgmon_client.definition import canonical_json, definition_hash, graph_definition
from lgmon_client.sender import Sender, SenderStats, default_sender
from lgmon_client.versions import Client, LgmonError, Resolution

__all__ = [
    "Client",
    "LangGraphMonitor",
    "LgmonError",
    "Resolution",
    "Sender",
    "SenderStats",
    "canonical_json",
    "default_sender",
    "definition_hash",
    "graph_definition",
    "monitor_performance",
]
__version__ = "0.1.0"

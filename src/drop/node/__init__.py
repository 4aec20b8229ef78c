"""A long-running DROP node: ``drop up``."""

from drop.node._config import NodeConfig, default_data_dir, is_loopback, load_config
from drop.node._node import Node
from drop.node._registry import FlowRegistry, Installed

__all__ = [
    "FlowRegistry",
    "Installed",
    "Node",
    "NodeConfig",
    "default_data_dir",
    "is_loopback",
    "load_config",
]

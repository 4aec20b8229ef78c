"""Flows: YAML declarations of pools, subscriptions and scenarios, and their runtime."""

from drop.flow._batch import BatchReport, run_batch
from drop.flow._build import pool_config
from drop.flow._engine import Flow, FlowOutputListener, FlowState
from drop.flow._loader import LoadedFlow, check_flow, load_flow, load_flow_text
from drop.flow._spec import Cache, FlowSpec, PoolSpec, Size, Step, Sub
from drop.flow._units import parse_duration, parse_size

__all__ = [
    "BatchReport",
    "Cache",
    "Flow",
    "FlowOutputListener",
    "FlowSpec",
    "FlowState",
    "LoadedFlow",
    "PoolSpec",
    "Size",
    "Step",
    "Sub",
    "check_flow",
    "load_flow",
    "load_flow_text",
    "parse_duration",
    "parse_size",
    "pool_config",
    "run_batch",
]

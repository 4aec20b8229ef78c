"""The node's HTTP API: the FastAPI app, its auth, and errors as statuses.

Exports load lazily, so ``drop.api.client`` (the CLI's only import from
here) does not pull in FastAPI: the CLI starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Auth": "drop.api._auth",
    "AuthError": "drop.api._auth",
    "IssuedToken": "drop.api._auth",
    "NodeHandle": "drop.api._app",
    "Principal": "drop.api._auth",
    "Role": "drop.api._auth",
    "create_app": "drop.api._app",
    "create_asgi": "drop.api._app",
    "status_of": "drop.api._errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'drop.api' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

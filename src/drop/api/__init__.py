"""The node's HTTP API: the FastAPI app, its auth, and errors as statuses."""

from drop.api._app import NodeHandle, create_app, create_asgi
from drop.api._auth import Auth, AuthError, IssuedToken, Principal, Role
from drop.api._errors import status_of

__all__ = [
    "Auth",
    "AuthError",
    "IssuedToken",
    "NodeHandle",
    "Principal",
    "Role",
    "create_app",
    "create_asgi",
    "status_of",
]

"""The hot call routes served straight from ASGI.

``POST /v1/flows/{flow}/call`` (no query) and the original ``POST
/api/v1/{flow}`` are what clients hammer. FastAPI's routing, dependency
injection and validation cost more per request than the pool call itself,
so these two are answered here, with the same authorisation, body rules and
error statuses as the FastAPI routes (shared through ``_calls.py``). Every
other request, and any call with a query string, goes to FastAPI.
"""

from __future__ import annotations

import json
from typing import Any

from drop.api._auth import Role
from drop.api._calls import (
    Forbidden,
    TooLarge,
    Unauthorized,
    authorize,
    bearer,
    parse_message,
    running_entry,
)
from drop.api._errors import error_body, status_of
from drop.errors import DropError

_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]
_JSON = [(b"content-type", b"application/json")]


def _flow_of(path: str) -> str | None:
    if path.startswith("/v1/flows/") and path.endswith("/call"):
        flow = path[10:-5]
    elif path.startswith("/api/v1/"):
        flow = path[8:]
    else:
        return None
    return flow if flow and "/" not in flow else None


class _Gone(Exception):
    """The client disconnected while sending its body."""


class FastCalls:
    """ASGI wrapper: call routes here, the rest to ``app``.

    Args:
        app: the FastAPI application.
        node: what the API serves (``NodeHandle``).
    """

    def __init__(self, app: Any, node: Any) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        flow = _flow_of(scope["path"])
        if flow is None:
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await self._call(flow, scope, receive)
        except _Gone:
            return  # the client left before its body was whole: nothing to call
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _call(
        self, flow: str, scope: dict[str, Any], receive: Any
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        node = self.node
        auth_header = content_type = None
        length = -1
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth_header = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
        try:
            inst = node.registry.get(flow)
            if not inst.loaded.spec.public:
                await authorize(node.auth, bearer(auth_header), Role.INVOKER, flow)
            if length > node.max_body:
                raise TooLarge(f"body of {length} bytes is over the limit of {node.max_body}")
            raw = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Gone
                raw += message.get("body", b"")
                if len(raw) > node.max_body:
                    raise TooLarge(f"body is over the limit of {node.max_body} bytes")
                if not message.get("more_body"):
                    break
            text, as_json = parse_message(raw, content_type or "")
            result = await running_entry(node.registry, flow).call(text)
        except DropError as exc:
            status = status_of(exc)
            headers = [*_JSON, (b"retry-after", b"1")] if status == 429 else _JSON
            return status, headers, json.dumps(error_body(exc)).encode()
        except Unauthorized as exc:
            body = {"error": "Unauthorized", "message": str(exc)}
            return 401, [*_JSON, (b"www-authenticate", b"Bearer")], json.dumps(body).encode()
        except Forbidden as exc:
            return 403, _JSON, json.dumps({"error": "Forbidden", "message": str(exc)}).encode()
        except TooLarge as exc:
            return 413, _JSON, json.dumps({"error": "TooLarge", "message": str(exc)}).encode()
        if as_json:
            return 200, _JSON, json.dumps({"result": result}).encode()
        return 200, _TEXT, result.encode()

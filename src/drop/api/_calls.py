"""What the FastAPI routes and the fast call path share: authorisation and
reading a call's message."""

from __future__ import annotations

import json
from typing import Any

from drop.api._auth import Auth, AuthError, Principal, Role
from drop.errors import PoolStopped, ProtocolError
from drop.pool import Pool


class Unauthorized(Exception):
    """No token, or a token that is invalid or expired (401)."""


class Forbidden(Exception):
    """A valid token whose role or flow list does not allow the action (403)."""


class TooLarge(Exception):
    """The body is over the node's ``max_body`` (413)."""


async def authorize(
    auth: Auth, token: str | None, need: Role, flow: str | None = None
) -> Principal:
    """The principal of ``token`` if it may act as ``need`` (on ``flow``).

    Raises:
        Unauthorized, Forbidden.
    """
    if not token:
        raise Unauthorized("a bearer token is required: POST /v1/auth/login")
    try:
        who = await auth.verify(token)
    except AuthError as exc:
        raise Unauthorized(str(exc)) from None
    if not who.allows(need, flow):
        if who.flows is not None and need is Role.INVOKER:
            allowed = ", ".join(who.flows) or "none"
            raise Forbidden(f"user {who.user} may only call flows: {allowed}")
        scope = f" on flow {flow}" if flow else ""
        raise Forbidden(f"user {who.user} ({who.role}) may not do this{scope}; needs {need}")
    return who


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if any."""
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def parse_message(raw: bytes, content_type: str) -> tuple[str, bool]:
    """A call's message from its body: the text (one trailing newline dropped),
    or ``{"message": ...}`` when the body is JSON. Returns ``(message, was_json)``.

    Raises:
        ProtocolError: not UTF-8, or JSON of the wrong shape.
    """
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the body is not UTF-8 (byte {exc.start})") from None
    if content_type.startswith("application/json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"the JSON body does not parse: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            raise ProtocolError('a JSON body is {"message": "..."}')
        return data["message"], True
    return text.removesuffix("\n"), False


def running_entry(registry: Any, flow: str) -> Pool:
    """The entry pool of installed flow ``flow``.

    Raises:
        NotFound: no such flow. PoolStopped: the flow is not running.
    """
    inst = registry.get(flow)
    if inst.flow is None:
        raise PoolStopped(f"flow {flow} is {inst.state}; start it: POST /v1/flows/{flow}/start")
    entry: Pool = inst.flow.entry
    return entry

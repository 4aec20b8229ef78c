"""A small HTTP client of the node API, used by the ``drop`` CLI.

Tokens saved by ``drop login`` live in ``~/.config/drop/credentials.json``
(mode 0600), one per node URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

#: Default node URL when neither --node nor DROP_NODE gives one.
DEFAULT_URL = "http://127.0.0.1:8081"


def credentials_path() -> Path:
    """``$DROP_CREDENTIALS``, else ``~/.config/drop/credentials.json``."""
    env = os.environ.get("DROP_CREDENTIALS")
    return Path(env) if env else Path.home() / ".config" / "drop" / "credentials.json"


def load_token(url: str) -> str | None:
    """The saved, unexpired token for ``url``, if any."""
    try:
        data = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return None
    entry = data.get(url.rstrip("/")) if isinstance(data, dict) else None
    if not isinstance(entry, dict) or entry.get("expires", 0) < time.time():
        return None
    token = entry.get("token")
    return token if isinstance(token, str) else None


def save_token(url: str, token: str, expires: float) -> Path:
    """Save ``token`` for ``url`` in the credentials file (mode 0600)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[url.rstrip("/")] = {"token": token, "expires": expires}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)
    return path


class ApiError(Exception):
    """The node answered with an error status.

    Attributes:
        status: the HTTP status.
        message: the node's message.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


class Unreachable(Exception):
    """No node answered at the URL."""


class Client:
    """Calls a node's API.

    Args:
        url: the node, e.g. ``http://127.0.0.1:8081``.
        token: a bearer token (default: the one saved by ``drop login``).
        timeout: seconds per request.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.token = token if token is not None else load_token(self.url)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise ``ApiError`` or ``Unreachable`` on failure."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"no node answers at {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, str(message))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and decode the JSON answer."""
        return self.request(method, path, **kwargs).json()

    @contextlib.contextmanager
    def stream(self, path: str, **params: Any) -> Iterator[Iterator[str]]:
        """Stream a Server-Sent Events endpoint: yields each ``data:`` line."""
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        message = response.json().get("message") or response.text
                    except ValueError:
                        message = response.text
                    raise ApiError(response.status_code, str(message))

                def lines() -> Iterator[str]:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            yield line[6:]

                yield lines()
        except httpx.TransportError as exc:
            raise Unreachable(f"no node answers at {self.url}: {exc}") from None

    # -- the calls the CLI makes ----------------------------------------------------

    def login(self, secret: str, ttl: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"secret": secret}
        if ttl:
            body["ttl"] = ttl
        result: dict[str, Any] = self.json("POST", "/v1/auth/login", json=body)
        return result

    def call(self, target: str, message: str, *, pool: bool = False, batch: bool = False) -> str:
        kind = "pools" if pool else "flows"
        params = {"batch": "1"} if batch else None
        return self.request(
            "POST",
            f"/v1/{kind}/{target}/call",
            content=message.encode(),
            params=params,
            headers={"Content-Type": "text/plain"},
        ).text

    def cast(self, target: str, message: str, *, pool: bool = False) -> None:
        kind = "pools" if pool else "flows"
        self.request(
            "POST",
            f"/v1/{kind}/{target}/cast",
            content=message.encode(),
            headers={"Content-Type": "text/plain"},
        )

    def install(
        self, yaml_text: str, base_dir: str, *, start: bool, replace: bool, source: str = "body"
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.json(
            "POST",
            "/v1/flows",
            content=yaml_text.encode(),
            params={
                "base_dir": base_dir,
                "start": str(start).lower(),
                "replace": str(replace).lower(),
                "source": source,
            },
            headers={"Content-Type": "text/plain"},
        )
        return result

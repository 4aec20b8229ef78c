"""A real node for API tests: embedded nats-server, uvicorn on a free loopback
port, reached over real HTTP; stopped after each test module.

Test modules using ``live`` run on the module's loop:
``pytestmark = pytest.mark.asyncio(loop_scope="module")``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from drop.api import Role
from drop.node import Node, load_config

ROOT = Path(__file__).resolve().parents[2]

#: A flow of three pools used across API tests: echo (sync), slow (sleeps
#: on "sleep"), crash (exits 3 on "die").
FLOW = f"""
name: demo
func:
  - name: echo
    cmd: {sys.executable} {ROOT / "bench" / "echo.py"}
  - name: slow
    cmd: sh -c 'while read l; do if [ "$l" = sleep ]; then sleep 5; fi; echo "slow:$l"; done'
    timeout: 500ms
    queue: 2
  - name: crash
    cmd: >-
      sh -c 'while read l; do if [ "$l" = die ]; then echo bye >&2; exit 3; fi;
      echo "ok:$l"; done'
    backoff: 20ms
"""

PUBLIC_FLOW = f"""
name: open
public: true
func:
  - name: shout
    cmd: {sys.executable} {ROOT / "tests" / "fixtures" / "upper.py"}
"""


@dataclass
class LiveNode:
    """A node under test and tokens of each role."""

    node: Node
    url: str
    admin: str
    operator: str
    invoker: str
    invoker_other: str  # an invoker limited to a flow that is not "demo"

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


async def start_node(data: Path, name: str) -> tuple[Node, str, str]:
    """A started node on free loopback ports: ``(node, url, admin token)``."""
    cfg = load_config(
        env={},
        flags={
            "data_dir": data,
            "http": "127.0.0.1:0",
            "nats_listen": "127.0.0.1:0",
            "name": name,
        },
    )
    node = Node(cfg, announce=lambda text: None)
    await node.start()
    secret = (data / "secrets" / "initial-admin").read_text().strip()
    return node, cfg.url, (await node.auth.login(secret)).token


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LiveNode]:
    data = tmp_path_factory.mktemp("node")
    node, url, admin = await start_node(data, "testnode")
    try:
        tokens = {}
        for name, role, flows in (
            ("op", Role.OPERATOR, None),
            ("inv", Role.INVOKER, ["demo"]),
            ("other", Role.INVOKER, ["open"]),
        ):
            user_secret = await node.auth.add_user(name, role, flows)
            tokens[name] = (await node.auth.login(user_secret)).token
        await node.registry.install(FLOW, str(data))
        await node.registry.start("demo")
        await node.registry.install(PUBLIC_FLOW, str(data))
        await node.registry.start("open")
        yield LiveNode(node, url, admin, tokens["op"], tokens["inv"], tokens["other"])
    finally:
        await node.stop()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # loopback only: never let an environment proxy see test traffic
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


__all__ = ["FLOW", "PUBLIC_FLOW", "ROOT", "LiveNode", "os", "start_node"]

"""One real nats-server for the whole folder, and a ``store`` fixture that runs
each semantic test on both ``MemoryStore`` and ``NatsStore``."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from drop.state import EmbeddedNats, KeyValue, MemoryStore, NatsStore, StateStore

_names = itertools.count()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedNats]:
    """A real ``nats-server -js`` on a free loopback port, shared by the folder."""
    server = EmbeddedNats(tmp_path_factory.mktemp("node"), listen="127.0.0.1:0")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=["memory", "nats"])
async def store(
    request: pytest.FixtureRequest, nats_server: EmbeddedNats
) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        store: StateStore = MemoryStore()
    else:
        store = await NatsStore.connect(nats_server.url)
    yield store
    await store.close()


@pytest.fixture
async def bucket(store: StateStore) -> KeyValue:
    """A fresh bucket, so tests sharing the server never see each other's keys."""
    return await store.bucket(f"test-{next(_names)}")

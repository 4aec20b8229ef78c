"""The ``KeyValue`` contract, run on every store (memory and NATS alike)."""

from __future__ import annotations

import pytest

from drop.errors import StateConflict, StateError
from drop.state import KeyValue, StateStore


async def test_put_then_get_returns_value_and_a_growing_revision(bucket: KeyValue) -> None:
    first = await bucket.put("flow", b"v1")
    assert await bucket.get("flow") == (b"v1", first)
    second = await bucket.put("flow", b"v2")
    assert second > first
    assert await bucket.get("flow") == (b"v2", second)


async def test_empty_value_is_a_value(bucket: KeyValue) -> None:
    revision = await bucket.put("empty", b"")
    assert await bucket.get("empty") == (b"", revision)
    assert await bucket.keys() == ["empty"]


async def test_get_of_absent_key_is_none(bucket: KeyValue) -> None:
    assert await bucket.get("nothing") is None


async def test_create_only_when_absent(bucket: KeyValue) -> None:
    revision = await bucket.create("leader", b"node-a")
    assert await bucket.get("leader") == (b"node-a", revision)
    with pytest.raises(StateConflict, match="leader"):
        await bucket.create("leader", b"node-b")
    assert await bucket.get("leader") == (b"node-a", revision)


async def test_create_after_delete_succeeds(bucket: KeyValue) -> None:
    await bucket.create("leader", b"node-a")
    await bucket.delete("leader")
    revision = await bucket.create("leader", b"node-b")
    assert await bucket.get("leader") == (b"node-b", revision)


async def test_update_is_compare_and_set(bucket: KeyValue) -> None:
    stale = await bucket.put("config", b"1")
    current = await bucket.put("config", b"2")
    with pytest.raises(StateConflict, match="config"):
        await bucket.update("config", b"lost", stale)
    assert await bucket.get("config") == (b"2", current)
    newer = await bucket.update("config", b"3", current)
    assert newer > current
    assert await bucket.get("config") == (b"3", newer)


@pytest.mark.parametrize("revision", [0, 1, 99])
async def test_update_of_absent_key_conflicts(bucket: KeyValue, revision: int) -> None:
    with pytest.raises(StateConflict):
        await bucket.update("ghost", b"x", revision)
    assert await bucket.get("ghost") is None


async def test_delete_then_get_is_none_and_delete_of_absent_is_fine(bucket: KeyValue) -> None:
    await bucket.put("gone", b"x")
    await bucket.delete("gone")
    assert await bucket.get("gone") is None
    await bucket.delete("never-was")
    assert await bucket.keys() == []


async def test_keys_are_sorted_and_skip_deleted(bucket: KeyValue) -> None:
    assert await bucket.keys() == []
    for key in ["b", "c", "a", "A_1", "z=9"]:
        await bucket.put(key, b"x")
    await bucket.delete("c")
    assert await bucket.keys() == ["A_1", "a", "b", "z=9"]


@pytest.mark.parametrize("key", ["", "a.b", "sp ace", "star*", "gt>", "é"])
async def test_invalid_key_names_the_bucket(bucket: KeyValue, key: str) -> None:
    for call in (
        lambda: bucket.get(key),
        lambda: bucket.put(key, b"x"),
        lambda: bucket.create(key, b"x"),
        lambda: bucket.update(key, b"x", 1),
        lambda: bucket.delete(key),
    ):
        with pytest.raises(StateError, match=f"bucket {bucket.name}") as info:
            await call()
        assert not isinstance(info.value, StateConflict)


async def test_buckets_are_separate_and_reopen_to_the_same_data(store: StateStore) -> None:
    one = await store.bucket("separate-one")
    two = await store.bucket("separate-two")
    await one.put("k", b"1")
    assert await two.get("k") is None
    again = await store.bucket("separate-one")
    assert again.name == "separate-one"
    got = await again.get("k")
    assert got is not None and got[0] == b"1"

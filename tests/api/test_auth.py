"""Users, secrets and tokens over in-memory buckets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from drop.api._auth import Auth, AuthError, IssuedToken, Principal, Role
from drop.errors import DropError, StateConflict
from drop.state import MemoryBucket, MemoryStore

FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
async def buckets() -> tuple[MemoryBucket, MemoryBucket]:
    store = MemoryStore()
    return await store.bucket("users"), await store.bucket("tokens")


@pytest.fixture
def auth(buckets: tuple[MemoryBucket, MemoryBucket]) -> Auth:
    return Auth(*buckets, hasher=FAST)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_bootstrap_writes_a_0600_file_whose_secret_logs_in_as_admin(
    auth: Auth, tmp_path: Path
) -> None:
    secrets_dir = tmp_path / "secrets"
    secret = await auth.bootstrap(secrets_dir)

    assert secret is not None
    path = secrets_dir / "initial-admin"
    assert mode(path) == 0o600
    assert mode(secrets_dir) == 0o700
    assert path.read_text() == secret + "\n"
    assert [p.name for p in secrets_dir.iterdir()] == ["initial-admin"]
    issued = await auth.login(path.read_text().strip())
    assert (issued.user, issued.role, issued.flows) == ("admin", Role.ADMIN, None)


async def test_a_second_bootstrap_returns_none_and_leaves_the_file_alone(
    auth: Auth, tmp_path: Path
) -> None:
    first = await auth.bootstrap(tmp_path)
    path = tmp_path / "initial-admin"
    before = path.stat()

    assert await auth.bootstrap(tmp_path) is None
    assert path.read_text() == f"{first}\n"
    assert path.stat().st_mtime_ns == before.st_mtime_ns


async def test_bootstrap_does_nothing_once_any_user_exists(auth: Auth, tmp_path: Path) -> None:
    await auth.add_user("alice", Role.OPERATOR)

    assert await auth.bootstrap(tmp_path / "secrets") is None
    assert not (tmp_path / "secrets").exists()


async def test_concurrent_bootstraps_create_exactly_one_admin(auth: Auth, tmp_path: Path) -> None:
    results = await asyncio.gather(auth.bootstrap(tmp_path), auth.bootstrap(tmp_path))

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (tmp_path / "initial-admin").read_text() == winners[0] + "\n"
    assert (await auth.login(winners[0])).user == "admin"


async def test_the_stored_user_record_holds_an_argon2_hash_and_no_secret_text(
    auth: Auth, buckets: tuple[MemoryBucket, MemoryBucket]
) -> None:
    users, _ = buckets
    secret = await auth.add_user("bob", Role.INVOKER, ["resize", "ocr"])

    name, _, random_part = secret.partition(".")
    assert name == "bob"
    found = await users.get("bob")
    assert found is not None
    stored = found[0]
    assert random_part.encode() not in stored
    record = json.loads(stored)
    assert record["hash"].startswith("$argon2id$")
    assert (record["role"], record["flows"]) == ("invoker", ["resize", "ocr"])
    assert FAST.verify(record["hash"], secret)


async def test_a_secret_works_only_for_its_user_and_a_new_one_is_made_each_time(
    auth: Auth,
) -> None:
    a = await auth.add_user("a", Role.OPERATOR)
    b = await auth.add_user("b", Role.INVOKER)

    assert a != b
    assert (await auth.login(a)).user == "a"
    assert (await auth.login(b)).user == "b"
    with pytest.raises(AuthError):
        await auth.login("a." + b.partition(".")[2])


@pytest.mark.parametrize(
    "make_secret",
    [
        pytest.param(lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"), id="wrong-random"),
        pytest.param(lambda s: "nobody." + s.partition(".")[2], id="unknown-user"),
        pytest.param(lambda s: s.replace(".", ""), id="no-dot"),
        pytest.param(lambda s: "carol.", id="empty-random"),
        pytest.param(lambda s: "." + s.partition(".")[2], id="empty-name"),
        pytest.param(lambda s: "bad name!." + s.partition(".")[2], id="invalid-name"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: s + "x" * 1000, id="huge"),
    ],
)
async def test_a_wrong_unknown_or_malformed_secret_is_an_auth_error_that_hides_it(
    auth: Auth, make_secret: Callable[[str], str]
) -> None:
    good = await auth.add_user("carol", Role.ADMIN)
    bad = make_secret(good)

    with pytest.raises(AuthError) as caught:
        await auth.login(bad)

    assert str(caught.value) == "invalid secret"
    assert isinstance(caught.value, DropError)
    assert caught.value.__cause__ is None
    random_part = good.partition(".")[2]
    assert random_part[:8] not in repr(caught.value)


async def test_a_token_verifies_to_the_principal_of_its_user(auth: Auth) -> None:
    secret = await auth.add_user("dave", Role.INVOKER, ["resize"])
    before = time.time()
    issued = await auth.login(secret)

    assert issued.token.startswith(f"drop_{issued.id}_")
    assert len(issued.id) == 16
    assert before + auth.token_ttl <= issued.expires <= time.time() + auth.token_ttl
    assert (issued.user, issued.role, issued.flows) == ("dave", Role.INVOKER, ("resize",))
    expected = Principal(user="dave", role=Role.INVOKER, flows=("resize",), token_id=issued.id)
    assert await auth.verify(issued.token) == expected
    assert await auth.verify(issued.token) == expected  # from the cache


async def test_every_login_issues_a_distinct_token(auth: Auth) -> None:
    secret = await auth.add_user("erin", Role.OPERATOR)

    one, two = await auth.login(secret), await auth.login(secret)

    assert one.id != two.id and one.token != two.token
    assert (await auth.verify(one.token)).token_id == one.id
    assert (await auth.verify(two.token)).token_id == two.id


async def test_a_token_in_the_store_is_only_its_sha256(
    auth: Auth, buckets: tuple[MemoryBucket, MemoryBucket]
) -> None:
    _, tokens = buckets
    issued = await auth.login(await auth.add_user("frank", Role.ADMIN))

    found = await tokens.get(issued.id)
    assert found is not None
    assert issued.token.rpartition("_")[2].encode() not in found[0]
    assert json.loads(found[0])["sha256"] == hashlib.sha256(issued.token.encode()).hexdigest()


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="forged-random"),
        pytest.param(lambda t: "drop_0123456789abcdef_" + t.split("_", 2)[2], id="unknown-id"),
        pytest.param(lambda t: t.replace("drop_", "xdrop_"), id="bad-prefix"),
        pytest.param(lambda t: "drop_" + t.split("_", 2)[1], id="no-random"),
        pytest.param(lambda t: "drop_ZZ_abc", id="bad-id"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: t + "x" * 1000, id="huge"),
    ],
)
async def test_a_forged_or_malformed_token_is_rejected(
    auth: Auth, make_token: Callable[[str], str]
) -> None:
    issued = await auth.login(await auth.add_user("gina", Role.ADMIN))
    await auth.verify(issued.token)  # cached: the forgery must not ride on it

    with pytest.raises(AuthError) as caught:
        await auth.verify(make_token(issued.token))

    assert str(caught.value) == "invalid or expired token"


async def test_an_expired_token_is_rejected_and_removed_even_if_cached(
    auth: Auth, buckets: tuple[MemoryBucket, MemoryBucket]
) -> None:
    _, tokens = buckets
    issued = await auth.login(await auth.add_user("hank", Role.OPERATOR), ttl=0.05)
    assert (await auth.verify(issued.token)).user == "hank"

    while time.time() < issued.expires:
        await asyncio.sleep(0.01)

    with pytest.raises(AuthError, match=r"^invalid or expired token$"):
        await auth.verify(issued.token)
    assert await tokens.get(issued.id) is None


async def test_a_revoked_token_is_rejected_even_though_it_was_cached(auth: Auth) -> None:
    issued = await auth.login(await auth.add_user("ivan", Role.ADMIN))
    other = await auth.login(await auth.add_user("jane", Role.OPERATOR))
    await auth.verify(issued.token)
    await auth.verify(other.token)

    assert await auth.revoke(issued.id) is True

    with pytest.raises(AuthError):
        await auth.verify(issued.token)
    assert (await auth.verify(other.token)).user == "jane"
    assert await auth.revoke(issued.id) is False
    assert await auth.revoke("not-an-id") is False


async def test_another_node_stops_accepting_a_revoked_token_within_its_cache_ttl(
    buckets: tuple[MemoryBucket, MemoryBucket],
) -> None:
    here = Auth(*buckets, hasher=FAST)
    there = Auth(*buckets, hasher=FAST, cache_ttl=0.05)
    issued = await here.login(await here.add_user("kate", Role.ADMIN))
    await there.verify(issued.token)

    await here.revoke(issued.id)
    await asyncio.sleep(0.06)

    with pytest.raises(AuthError):
        await there.verify(issued.token)


async def test_list_tokens_shows_live_tokens_but_never_a_token_or_its_hash(auth: Auth) -> None:
    admin = await auth.login(await auth.add_user("leo", Role.ADMIN))
    invoker = await auth.login(await auth.add_user("mia", Role.INVOKER, ["ocr"]))
    expired = await auth.login(await auth.add_user("ned", Role.OPERATOR), ttl=0.01)
    while time.time() < expired.expires:
        await asyncio.sleep(0.01)

    listing = await auth.list_tokens()

    assert [e["id"] for e in listing] == [admin.id, invoker.id]
    assert all(set(e) == {"id", "user", "role", "flows", "created", "expires"} for e in listing)
    assert listing[1] | {"created": 0} == {
        "id": invoker.id,
        "user": "mia",
        "role": Role.INVOKER,
        "flows": ["ocr"],
        "created": 0,
        "expires": invoker.expires,
    }
    text = json.dumps(listing)
    for issued in (admin, invoker, expired):
        assert issued.token not in text
        assert issued.token.rpartition("_")[2] not in text
        assert hashlib.sha256(issued.token.encode()).hexdigest() not in text
    assert expired.id not in [t["id"] for t in await auth.list_tokens()]


async def test_issued_token_repr_hides_the_token(auth: Auth) -> None:
    issued = await auth.login(await auth.add_user("olga", Role.ADMIN))

    assert issued.token not in repr(issued)
    assert issued.token not in str(issued)
    assert issued.id in repr(issued)
    assert isinstance(issued, IssuedToken)


_ROLES = [Role.ADMIN, Role.OPERATOR, Role.INVOKER]


def who(role: Role, flows: tuple[str, ...] | None = None) -> Principal:
    return Principal(user="u", role=role, flows=flows, token_id="0123456789abcdef")


@pytest.mark.parametrize(
    ("principal", "need", "flow", "allowed"),
    [
        # admin: everything
        *[(who(Role.ADMIN), need, flow, True) for need in _ROLES for flow in (None, "a")],
        # operator: operator and invoker actions, any flow
        (who(Role.OPERATOR), Role.ADMIN, None, False),
        (who(Role.OPERATOR), Role.ADMIN, "a", False),
        (who(Role.OPERATOR), Role.OPERATOR, None, True),
        (who(Role.OPERATOR), Role.OPERATOR, "a", True),
        (who(Role.OPERATOR), Role.INVOKER, None, True),
        (who(Role.OPERATOR), Role.INVOKER, "a", True),
        # invoker on all flows: only invoker actions
        (who(Role.INVOKER), Role.ADMIN, None, False),
        (who(Role.INVOKER), Role.ADMIN, "a", False),
        (who(Role.INVOKER), Role.OPERATOR, None, False),
        (who(Role.INVOKER), Role.OPERATOR, "a", False),
        (who(Role.INVOKER), Role.INVOKER, None, True),
        (who(Role.INVOKER), Role.INVOKER, "a", True),
        # invoker limited to flows a and b: only invoker actions on a or b
        (who(Role.INVOKER, ("a", "b")), Role.ADMIN, "a", False),
        (who(Role.INVOKER, ("a", "b")), Role.OPERATOR, "a", False),
        (who(Role.INVOKER, ("a", "b")), Role.INVOKER, "a", True),
        (who(Role.INVOKER, ("a", "b")), Role.INVOKER, "b", True),
        (who(Role.INVOKER, ("a", "b")), Role.INVOKER, "c", False),
        (who(Role.INVOKER, ("a", "b")), Role.INVOKER, None, False),
        (who(Role.INVOKER, ("a", "b")), Role.ADMIN, None, False),
        # invoker limited to no flow at all: nothing
        (who(Role.INVOKER, ()), Role.INVOKER, "a", False),
        (who(Role.INVOKER, ()), Role.INVOKER, None, False),
    ],
)
def test_principal_allows_follows_the_role_and_flow_matrix(
    principal: Principal, need: Role, flow: str | None, allowed: bool
) -> None:
    assert principal.allows(need, flow) is allowed


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR])
def test_only_invokers_can_be_limited_to_flows(role: Role) -> None:
    with pytest.raises(ValueError, match="only invokers"):
        who(role, ("a",))


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR])
async def test_add_user_refuses_flow_limits_for_non_invokers(auth: Auth, role: Role) -> None:
    with pytest.raises(ValueError, match="only invokers"):
        await auth.add_user("pat", role, ["a"])


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "dot.ted", "white space", "slash/ed", "ünï", "semi;colon", "eq=ual"]
)
async def test_invalid_user_names_are_rejected_with_the_rule(auth: Auth, name: str) -> None:
    with pytest.raises(ValueError, match=r"invalid user name .*1 to 64 characters"):
        await auth.add_user(name, Role.INVOKER)


async def test_the_longest_and_oddest_valid_user_names_log_in(auth: Auth) -> None:
    for name in ("a" * 64, "A-z_0-9", "_", "-"):
        assert (await auth.login(await auth.add_user(name, Role.INVOKER))).user == name


async def test_adding_an_existing_user_is_a_conflict(auth: Auth) -> None:
    first = await auth.add_user("quinn", Role.ADMIN)

    with pytest.raises(StateConflict, match="quinn"):
        await auth.add_user("quinn", Role.INVOKER)
    assert (await auth.login(first)).role == Role.ADMIN


async def test_a_non_positive_ttl_is_refused(
    auth: Auth, buckets: tuple[MemoryBucket, MemoryBucket]
) -> None:
    secret = await auth.add_user("ruth", Role.ADMIN)

    with pytest.raises(ValueError, match="ttl"):
        await auth.login(secret, ttl=0)
    with pytest.raises(ValueError, match="token_ttl"):
        Auth(*buckets, token_ttl=-1)

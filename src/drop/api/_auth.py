"""Users, secrets and bearer tokens for the node's HTTP API.

Pure logic over two ``KeyValue`` buckets; the HTTP layer only parses the
``Authorization`` header and calls :meth:`Auth.verify`.

* A **user** has a long-lived *secret* ``"<name>.<random>"``. The users bucket
  keeps, under the user's name, only an argon2 hash of the secret with the
  role and flow limits. The name prefix lets :meth:`Auth.login` find the
  record without scanning.
* :meth:`Auth.login` trades a secret for a short-lived bearer *token*
  ``"drop_<id>_<random>"``. The tokens bucket keeps, under ``<id>``, only the
  token's SHA-256 with who it belongs to and when it expires.
* :meth:`Auth.verify` turns a token into a :class:`Principal`, whose
  :meth:`Principal.allows` answers authorization questions.

Secrets and tokens never appear in exceptions, reprs or log lines: every
authentication failure is an :class:`AuthError` with a fixed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from drop.errors import DropError, StateConflict
from drop.state import KeyValue

log = logging.getLogger(__name__)

#: The rule user names follow; also the key rule of the users bucket.
USER_NAME_RULE = "1 to 64 characters from A-Z, a-z, 0-9, '_' and '-'"
_USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
#: Longer inputs are rejected before hashing: nothing legitimate is this long.
_MAX_SECRET = 512
#: Name of the file :meth:`Auth.bootstrap` writes the first admin's secret to.
INITIAL_ADMIN_FILE = "initial-admin"
INITIAL_ADMIN = "admin"

_BAD_SECRET = "invalid secret"
_BAD_TOKEN = "invalid or expired token"


class AuthError(DropError):
    """Authentication failed: a wrong, unknown or malformed secret or token.

    The message is fixed (``"invalid secret"`` or ``"invalid or expired
    token"``) and never contains what the caller presented.
    """


class Role(enum.StrEnum):
    """What a user may do; each role includes everything below it.

    * ``admin``: everything, including users and tokens.
    * ``operator``: manage flows and pools, and call them.
    * ``invoker``: only call or cast into flows, optionally limited to named flows.
    """

    ADMIN = "admin"
    OPERATOR = "operator"
    INVOKER = "invoker"


_RANK = {Role.INVOKER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def _check_flows(role: Role, flows: tuple[str, ...] | None) -> None:
    if flows is None:
        return
    if role is not Role.INVOKER:
        raise ValueError(f"only invokers can be limited to flows, not role {role.value!r}")
    for flow in flows:
        if not isinstance(flow, str) or not flow:
            raise ValueError(f"flow names must be non-empty strings, not {flow!r}")


@dataclass(frozen=True)
class Principal:
    """Who made a request, as established by :meth:`Auth.verify`.

    Attributes:
        user: the user's name.
        role: the user's role when the token was issued.
        flows: for an invoker, the only flows it may call; ``None`` means all
            flows. Always ``None`` for admins and operators.
        token_id: the id of the token that authenticated the request (for
            audit and revocation; not a secret).

    Raises:
        ValueError: on construction, if ``flows`` is set for a non-invoker.
    """

    user: str
    role: Role
    flows: tuple[str, ...] | None
    token_id: str

    def __post_init__(self) -> None:
        _check_flows(self.role, self.flows)

    def allows(self, need: Role, flow: str | None = None) -> bool:
        """Whether this principal may do something that requires role ``need``.

        Roles are ordered admin > operator > invoker, so a principal is allowed
        anything that needs its own role or a lower one. A flow-limited invoker
        is further restricted to actions scoped to one of its flows: with
        ``flow=None`` (an action not scoped to a single flow, such as listing
        every flow) it is refused.

        Args:
            need: the least role the action requires.
            flow: the flow the action is about, or ``None`` if it is not about
                exactly one flow.
        """
        if _RANK[self.role] < _RANK[Role(need)]:
            return False
        if self.flows is None:
            return True
        return flow is not None and flow in self.flows


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token just issued by :meth:`Auth.login`.

    Attributes:
        token: the secret bearer string; show it to the user once, it cannot
            be recovered later. Hidden from ``repr``.
        id: the token's public id, as :meth:`Auth.list_tokens` and
            :meth:`Auth.revoke` use it.
        user: the user it was issued to.
        role: the user's role.
        flows: the user's flow limit, ``None`` for all flows.
        expires: when it stops working, as unix time.
    """

    token: str = field(repr=False)
    id: str
    user: str
    role: Role
    flows: tuple[str, ...] | None
    expires: float


def check_user_name(name: str) -> None:
    """Raise ``ValueError`` stating the rule if ``name`` is not a valid user name."""
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        raise ValueError(f"invalid user name {name!r}: use {USER_NAME_RULE}")


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _token_id(token: str) -> str | None:
    """The id inside ``drop_<id>_<random>``, or ``None`` if malformed."""
    if len(token) > _MAX_SECRET:
        return None
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "drop" or not parts[2]:
        return None
    if not _TOKEN_ID.fullmatch(parts[1]):
        return None
    return parts[1]


def _flows_tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only.

    The temporary file is created with mode 0600, so the content is never
    world-readable, even briefly.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class Auth:
    """Users, secrets and tokens kept in two state buckets.

    Several ``Auth`` objects (one per node) may share the same buckets. Each
    keeps a small cache of verified tokens; :meth:`revoke` evicts from the
    local cache at once, while other nodes notice a revocation within
    ``cache_ttl`` seconds.

    Args:
        users: bucket of user records, keyed by user name.
        tokens: bucket of token records, keyed by token id.
        token_ttl: default lifetime of a token, in seconds.
        hasher: the argon2 hasher for user secrets; argon2's defaults if
            ``None``. Tests pass a cheap one.
        cache_ttl: how long a verified token is trusted without reading the
            tokens bucket again, in seconds (never past the token's expiry).
        cache_size: most tokens kept in the cache.
    """

    def __init__(
        self,
        users: KeyValue,
        tokens: KeyValue,
        *,
        token_ttl: float = 12 * 3600,
        hasher: PasswordHasher | None = None,
        cache_ttl: float = 30.0,
        cache_size: int = 1024,
    ) -> None:
        if token_ttl <= 0:
            raise ValueError(f"token_ttl must be positive, not {token_ttl!r}")
        self._users = users
        self._tokens = tokens
        self.token_ttl = token_ttl
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        #: sha256 of a token -> (principal, unix time it is trusted until)
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._dummy_hash: str | None = None

    def __repr__(self) -> str:
        return f"Auth(users={self._users.name!r}, tokens={self._tokens.name!r})"

    # -- users -------------------------------------------------------------

    async def bootstrap(self, secrets_dir: Path) -> str | None:
        """Create the first admin if there are no users yet.

        With no user in the users bucket, creates user ``"admin"`` with role
        admin, writes its secret (and a newline) to
        ``secrets_dir/"initial-admin"`` with mode 0600 (creating
        ``secrets_dir`` with mode 0700 if needed; the write is atomic), and
        returns the secret so the caller can print it once. If any user
        exists, or another node bootstraps concurrently and wins, returns
        ``None`` and leaves the file alone.

        Raises:
            OSError: the file could not be written; the admin user is removed
                again so a later bootstrap can retry.
        """
        if await self._users.keys():
            return None
        try:
            secret = await self.add_user(INITIAL_ADMIN, Role.ADMIN)
        except StateConflict:
            return None
        path = Path(secrets_dir) / INITIAL_ADMIN_FILE
        try:
            await asyncio.to_thread(self._write_secret_file, path, secret)
        except BaseException:
            await self._users.delete(INITIAL_ADMIN)
            raise
        log.info("created user %r; its secret is in %s", INITIAL_ADMIN, path)
        return secret

    @staticmethod
    def _write_secret_file(path: Path, secret: str) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(path, secret + "\n")

    async def add_user(self, name: str, role: Role, flows: list[str] | None = None) -> str:
        """Create a user and return its secret.

        The secret is ``"<name>.<random>"`` and is returned only here: the
        users bucket keeps an argon2 hash of it, never the secret itself.

        Args:
            name: the user's name; see :data:`USER_NAME_RULE`.
            role: the user's role.
            flows: for an invoker, the only flows it may call; ``None`` for all.

        Raises:
            ValueError: a bad name, role or flow list (flows set for a
                non-invoker), naming the rule broken.
            StateConflict: the user already exists.
        """
        check_user_name(name)
        role = Role(role)
        limit = None if flows is None else tuple(dict.fromkeys(flows))
        _check_flows(role, limit)
        secret = f"{name}.{secrets.token_urlsafe(32)}"
        hashed = await asyncio.to_thread(self._hasher.hash, secret)
        record = {
            "hash": hashed,
            "role": role.value,
            "flows": None if limit is None else list(limit),
            "created": time.time(),
        }
        try:
            await self._users.create(name, json.dumps(record).encode())
        except StateConflict:
            raise StateConflict(f"user {name!r} already exists") from None
        log.info("created user %r with role %s", name, role.value)
        return secret

    # -- tokens ------------------------------------------------------------

    async def login(self, secret: str, ttl: float | None = None) -> IssuedToken:
        """Trade a user's secret for a new bearer token.

        Verifying the secret is deliberately slow (argon2) and runs in a
        worker thread.

        Args:
            secret: the user's secret, ``"<name>.<random>"``.
            ttl: the token's lifetime in seconds; the ``token_ttl`` given to
                the constructor if ``None``.

        Raises:
            AuthError: ``"invalid secret"``, whatever was wrong with it.
            ValueError: ``ttl`` is not positive.
        """
        ttl = self.token_ttl if ttl is None else ttl
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        user, record = await self._check_secret(secret)
        role = Role(record["role"])
        flows = _flows_tuple(record.get("flows"))

        token_id = secrets.token_hex(8)
        token = f"drop_{token_id}_{secrets.token_urlsafe(32)}"
        created = time.time()
        expires = created + ttl
        stored = {
            "sha256": _sha256(token),
            "user": user,
            "role": role.value,
            "flows": None if flows is None else list(flows),
            "created": created,
            "expires": expires,
        }
        await self._tokens.create(token_id, json.dumps(stored).encode())
        log.info("issued token %s to user %r", token_id, user)
        return IssuedToken(
            token=token, id=token_id, user=user, role=role, flows=flows, expires=expires
        )

    async def _check_secret(self, secret: str) -> tuple[str, dict[str, Any]]:
        """The user name and record a secret belongs to, or ``AuthError``."""
        if not isinstance(secret, str) or len(secret) > _MAX_SECRET:
            raise AuthError(_BAD_SECRET)
        name, dot, rest = secret.partition(".")
        found = None
        if dot and rest and _USER_NAME.fullmatch(name):
            found = await self._users.get(name)
        if found is None:
            # Spend the same time as for a real user, so timing does not tell
            # which user names exist.
            await asyncio.to_thread(self._verify_hash, await self._dummy(), secret)
            raise AuthError(_BAD_SECRET)
        value, revision = found
        try:
            record = json.loads(value)
            hashed = record["hash"]
            Role(record["role"])
        except (ValueError, KeyError, TypeError):
            log.warning("user %r has a corrupt record", name)
            raise AuthError(_BAD_SECRET) from None
        if not await asyncio.to_thread(self._verify_hash, hashed, secret):
            raise AuthError(_BAD_SECRET)
        if self._hasher.check_needs_rehash(hashed):
            await self._rehash(name, record, secret, revision)
        return name, record

    def _verify_hash(self, hashed: str, secret: str) -> bool:
        try:
            return self._hasher.verify(hashed, secret)
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _rehash(self, name: str, record: dict[str, Any], secret: str, revision: int) -> None:
        """Store the hash again with the current parameters; losing a race is fine."""
        record = dict(record, hash=await asyncio.to_thread(self._hasher.hash, secret))
        with contextlib.suppress(StateConflict):
            await self._users.update(name, json.dumps(record).encode(), revision)

    async def verify(self, token: str) -> Principal:
        """The principal a bearer token stands for.

        Recently verified tokens are answered from memory; see ``cache_ttl``.
        An expired token's record is deleted on the way.

        Raises:
            AuthError: ``"invalid or expired token"``: malformed, unknown,
                revoked, expired or forged.
        """
        if not isinstance(token, str):
            raise AuthError(_BAD_TOKEN)
        digest = _sha256(token)
        now = time.time()
        cached = self._cache.get(digest)
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._cache[digest]

        token_id = _token_id(token)
        if token_id is None:
            raise AuthError(_BAD_TOKEN)
        found = await self._tokens.get(token_id)
        if found is None:
            raise AuthError(_BAD_TOKEN)
        try:
            record = json.loads(found[0])
            stored = record["sha256"]
            expires = float(record["expires"])
            principal = Principal(
                user=record["user"],
                role=Role(record["role"]),
                flows=_flows_tuple(record.get("flows")),
                token_id=token_id,
            )
        except (ValueError, KeyError, TypeError):
            log.warning("token %s has a corrupt record", token_id)
            raise AuthError(_BAD_TOKEN) from None
        if not isinstance(stored, str) or not hmac.compare_digest(stored.encode(), digest.encode()):
            raise AuthError(_BAD_TOKEN)
        if now >= expires:
            await self._tokens.delete(token_id)
            raise AuthError(_BAD_TOKEN)
        self._remember(digest, principal, min(expires, now + self._cache_ttl), now)
        return principal

    def _remember(self, digest: str, principal: Principal, until: float, now: float) -> None:
        if self._cache_size <= 0 or until <= now:
            return
        if len(self._cache) >= self._cache_size:
            for key in [k for k, (_, t) in self._cache.items() if t <= now]:
                del self._cache[key]
        while len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[digest] = (principal, until)

    async def list_tokens(self) -> list[dict[str, Any]]:
        """Every live token, oldest first, without secrets.

        Each entry has ``id``, ``user``, ``role``, ``flows`` (a list or
        ``None``), ``created`` and ``expires`` (unix times); never the token
        or its hash. Expired tokens are deleted on the way; corrupt records
        are skipped with a warning.
        """
        now = time.time()
        listing: list[dict[str, Any]] = []
        for token_id in await self._tokens.keys():
            found = await self._tokens.get(token_id)
            if found is None:
                continue
            try:
                record = json.loads(found[0])
                entry = {
                    "id": token_id,
                    "user": str(record["user"]),
                    "role": Role(record["role"]),
                    "flows": None if record.get("flows") is None else list(record["flows"]),
                    "created": float(record["created"]),
                    "expires": float(record["expires"]),
                }
            except (ValueError, KeyError, TypeError):
                log.warning("token %s has a corrupt record", token_id)
                continue
            if now >= entry["expires"]:
                await self._tokens.delete(token_id)
                continue
            listing.append(entry)
        listing.sort(key=lambda e: (e["created"], e["id"]))
        return listing

    async def revoke(self, token_id: str) -> bool:
        """Delete a token by id, so it stops working at once on this node.

        Other nodes sharing the buckets stop accepting it within their
        ``cache_ttl``.

        Returns:
            ``True`` if the token existed, ``False`` if not (or ``token_id``
            is not a well-formed id).
        """
        for digest in [d for d, (p, _) in self._cache.items() if p.token_id == token_id]:
            del self._cache[digest]
        if not isinstance(token_id, str) or not _TOKEN_ID.fullmatch(token_id):
            return False
        if await self._tokens.get(token_id) is None:
            return False
        await self._tokens.delete(token_id)
        log.info("revoked token %s", token_id)
        return True


__all__ = [
    "INITIAL_ADMIN",
    "INITIAL_ADMIN_FILE",
    "USER_NAME_RULE",
    "Auth",
    "AuthError",
    "IssuedToken",
    "Principal",
    "Role",
    "check_user_name",
]

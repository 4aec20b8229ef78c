"""Schemathesis against a live node over real HTTP: no input makes it answer 500.

The node is this module's own (``fuzz_node``), so the destructive operations
(stop and delete a flow, revoke tokens) are fuzzed too, after the others.
Every request carries an admin token, so the fuzz reaches the handlers.

The OpenAPI document is fetched from the node and sharpened for fuzzing only:
path parameters also draw real names (``demo``, ``echo``...), and the call
routes, which read their body by hand and so declare none, get one (text,
JSON ``{"message": ...}`` or raw bytes) so their parsing is fuzzed as well.

A 502, 503 or 504 carrying a DROP error body is how the API reports a worker
error, a stopped pool or a timeout: allowed from the routes that run pool
work. A 500, or any 5xx elsewhere, fails.

Schemathesis calls are blocking and the node runs on this module's event
loop, so the fuzz runs in a thread while the loop serves.
"""

from __future__ import annotations

import asyncio
import copy
import math
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from itertools import product
from typing import Any

import httpx
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error

from drop.node import Node
from tests.api.conftest import FLOW, PUBLIC_FLOW, ROOT, start_node

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

#: Hypothesis examples per operation (positive and negative mixed).
MAX_EXAMPLES = 30
#: Fewer for the operations that hash with argon2 on every request, by design
#: slow (about 0.1 to 0.3 s each).
ARGON2_EXAMPLES = {"POST /v1/auth/login": 10, "POST /v1/auth/users": 10}
#: Per example: the slowest legitimate answer is a 500 ms worker timeout.
DEADLINE = timedelta(seconds=5)
REQUEST_TIMEOUT = 10.0

Op = tuple[str, str]  # (METHOD, path template)
EVENTS: Op = ("GET", "/v1/pools/{pool}/events")
#: Fuzzed last, one at a time, in this order: each can take away what the
#: others work on.
DESTRUCTIVE = [
    ("POST", "/v1/flows/{flow}/stop"),
    ("DELETE", "/v1/auth/tokens/{token_id}"),
    ("DELETE", "/v1/flows/{flow}"),
]
#: Operations that run pool work, where 502/503/504 are the documented
#: mapping of worker errors, stopped pools and timeouts.
POOL_WORK = {
    ("POST", "/v1/flows/{flow}/call"),
    ("POST", "/api/v1/{flow}"),
    ("POST", "/v1/flows/{flow}/cast"),
    ("POST", "/v1/pools/{pool}/call"),
    ("POST", "/v1/pools/{pool}/cast"),
    ("POST", "/v1/flows/{flow}/scenarios/{scenario}"),
}
MAPPED_5XX = {502, 503, 504}
#: Operations the fuzz cannot expect a 2xx from: it knows no secret, no token
#: id, and refs only by chance.
NO_2XX = {"POST /v1/auth/login", "DELETE /v1/auth/tokens/{token_id}", "GET /v1/results/{ref}"}

#: Real values for path parameters: besides cases with generated path
#: parameters, each operation gets cases for every combination of these.
REAL_NAMES: dict[str, list[str]] = {
    "flow": ["demo", "open", "fz"],
    "pool": ["echo", "slow", "crash", "shout", "fzp"],
    "scenario": ["start", "stop"],
    "ref": ["echo-1", "shout-0"],
    "token_id": ["0123456789abcdef"],
}
#: A third flow, installed and started like the others; the install route is
#: also given it (409, or a replace with ``replace=true``). Its pool takes
#: lines of 64 bytes at most.
NEW_FLOW = (
    "name: fz\nfunc:\n  - name: fzp\n    max_line: 64\n"
    f"    cmd: {sys.executable} {ROOT / 'tests' / 'fixtures' / 'upper.py'}\n"
)
#: Cases run on every fuzz, besides the generated ones: bodies (and query
#: parameters) that reach the interesting paths: a
#: worker timeout, a worker crash, a newline inside a message, a line over
#: the pool's limit, replacing and starting a flow, YAML that nests deeper
#: than Python recurses, and bodies that are not UTF-8 (every route reading
#: a body: found answering 500).
NOT_UTF8 = b"\xff\xfe"
TEXT = "text/plain"
FIXED: dict[Op, list[tuple[dict[str, str], str | bytes, dict[str, Any]]]] = {
    ("POST", "/v1/pools/{pool}/call"): [
        ({"pool": "slow"}, "sleep", {}),
        ({"pool": "crash"}, "die", {}),
        ({"pool": "echo"}, "two\nlines", {}),
        ({"pool": "fzp"}, "x" * 65, {}),
    ],
    ("POST", "/v1/flows/{flow}/call"): [({"flow": "demo"}, "two\nlines\n", {})],
    ("POST", "/v1/flows"): [
        ({}, NEW_FLOW, {"replace": "true", "start": "true", "base_dir": str(ROOT)}),
        ({}, FLOW, {"replace": "true", "base_dir": str(ROOT)}),
        ({}, "a: &a [*a]\n", {}),
        ({}, "[" * 5000 + "]" * 5000, {}),
        ({}, "name: " + "{a: " * 5000 + "}" * 5000, {}),
        ({}, NOT_UTF8, {}),
    ],
    ("POST", "/v1/auth/login"): [({}, NOT_UTF8, {})],
    ("POST", "/v1/auth/users"): [({}, NOT_UTF8, {})],
    ("POST", "/v1/pools/{pool}/scale"): [({"pool": "echo"}, NOT_UTF8, {})],
    ("POST", "/v1/pools/{pool}/cast"): [({"pool": "echo"}, NOT_UTF8, {})],
    ("POST", "/api/v1/{flow}"): [({"flow": "demo"}, NOT_UTF8, {})],
}


@dataclass
class FuzzNode:
    node: Node
    url: str
    admin: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FuzzNode]:
    """A node of its own, set up like ``live`` (same flows, and ``fz``), that
    the fuzz may wreck."""
    data = tmp_path_factory.mktemp("fuzz-node")
    node, url, admin = await start_node(data, "fuzznode")
    try:
        for text in (FLOW, PUBLIC_FLOW, NEW_FLOW):
            inst = await node.registry.install(text, str(data))
            await node.registry.start(inst.name)
        yield FuzzNode(node, url, admin)
    finally:
        await node.stop()


def sharpen(raw: dict[str, Any]) -> dict[str, Any]:
    """The node's OpenAPI document with a body declared for the call routes."""
    doc = copy.deepcopy(raw)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if (method.upper(), path) in POOL_WORK and "requestBody" not in op:
                message = {"type": "string"}
                op["requestBody"] = {
                    "content": {
                        "text/plain": {"schema": message},
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"message": message},
                                "required": ["message"],
                            }
                        },
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    }
                }
    return doc


def tame(case: Case) -> None:
    """Keep a scale within 1..3 workers: 1024 would fork 1024 workers, and 0
    leaves calls queued until a worker comes (by design), so either would
    only measure the machine. Other sizes (negative, wrong types) go as
    generated."""
    if case.operation.path != "/v1/pools/{pool}/scale" or not isinstance(case.body, dict):
        return
    try:
        size = float(case.body.get("size"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return
    if math.isfinite(size) and 0 <= size <= 1024 and not 1 <= size <= 3:
        case.body["size"] = 2


def no_server_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """``not_a_server_error``, except for the 502/503/504 a route running pool
    work answers with a DROP error body."""
    op = (case.operation.method.upper(), case.operation.path)
    if response.status_code in MAPPED_5XX and op in POOL_WORK:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and {"error", "message"} <= set(body):
            return None
    return not_a_server_error(ctx, response, case)


def strategy(operation: Any) -> st.SearchStrategy[Case]:
    """Positive and negative cases, with generated and with real path parameters."""
    names = [p.name for p in operation.path_parameters]
    real = [dict(zip(names, v, strict=True)) for v in product(*(REAL_NAMES[n] for n in names))]
    more = bool(operation.query or operation.body)
    parts = [operation.as_strategy(GenerationMode.POSITIVE)]
    if names or more:
        parts.append(operation.as_strategy(GenerationMode.NEGATIVE))
    for params in real if names else []:
        parts.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=params))
        if more:
            parts.append(operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=params))
    return st.one_of(parts)


def fuzz(
    operation: Any,
    url: str,
    token: str,
    seen: Counter[tuple[str, int]],
    send: Callable[..., int] | None = None,
) -> str | None:
    """Fuzz one operation, counting its statuses in ``seen``; the failure,
    described, or ``None``."""
    headers = {"Authorization": f"Bearer {token}"}

    def check(case: Case) -> None:
        tame(case)
        if send is not None:
            seen[operation.label, send(case, headers)] += 1
            return
        response = case.call(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT)
        seen[operation.label, response.status_code] += 1
        case.validate_response(response, checks=[no_server_error], headers=headers)

    run = given(case=strategy(operation))(check)
    for params, body, query in FIXED.get((operation.method.upper(), operation.path), []):
        case = operation.Case(path_parameters=params, query=query, body=body, media_type=TEXT)
        run = example(case=case)(run)
    run = settings(
        max_examples=ARGON2_EXAMPLES.get(operation.label, MAX_EXAMPLES),
        derandomize=True,
        database=None,
        deadline=DEADLINE,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )(run)

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # failed checks, a crash, a lost connection
        return f"{operation.label}: {type(exc).__name__}: {exc}"
    return None


def open_events(url: str) -> Callable[[Case, dict[str, str]], int]:
    """Send an events case but read only the status: the stream never ends."""

    def send(case: Case, headers: dict[str, str]) -> int:
        kwargs = case.as_transport_kwargs(base_url=url, headers=headers)
        with requests.request(**kwargs, stream=True, timeout=REQUEST_TIMEOUT) as r:
            assert r.status_code < 500, f"{r.status_code} for {r.url}: {r.content[:300]!r}"
            return r.status_code

    return send


def fuzz_all(schema: Any, url: str, token: str, seen: Counter[tuple[str, int]]) -> list[str]:
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations[(operation.method.upper(), operation.path)] = operation
    assert EVENTS in operations and all(op in operations for op in DESTRUCTIVE)
    safe = [op for key, op in operations.items() if key not in DESTRUCTIVE and key != EVENTS]
    failures = [fuzz(op, url, token, seen) for op in safe]
    failures.append(fuzz(operations[EVENTS], url, token, seen, open_events(url)))
    failures += [fuzz(operations[key], url, token, seen) for key in DESTRUCTIVE]
    return [f for f in failures if f is not None]


async def test_no_input_makes_the_api_answer_500(fuzz_node: FuzzNode) -> None:
    async with httpx.AsyncClient(base_url=fuzz_node.url, timeout=10) as c:
        raw = (await c.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(sharpen(raw), config=schemathesis.Config())
    schema.config.update(base_url=fuzz_node.url)

    seen: Counter[tuple[str, int]] = Counter()
    failures = await asyncio.to_thread(fuzz_all, schema, fuzz_node.url, fuzz_node.admin, seen)

    assert not failures, "\n\n".join(failures)
    # the fuzz reached the handlers, not only the 404s and 422s in front of them
    reached = {label for (label, status), _ in seen.items() if 200 <= status < 300}
    missed = {result.ok().label for result in schema.get_all_operations()} - reached - NO_2XX
    assert not missed, f"no 2xx answer from {sorted(missed)}: {sorted(seen.items())}"
    # and the node is still up and answering
    async with httpx.AsyncClient(base_url=fuzz_node.url, timeout=10) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        r = await c.get("/v1/node", headers={"Authorization": f"Bearer {fuzz_node.admin}"})
        assert r.status_code == 200, r.text

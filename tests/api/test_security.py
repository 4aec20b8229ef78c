"""Who may call what, checked over real HTTP against every route the node serves.

The matrix is driven by the node's own ``/openapi.json``: every (method, path)
must be classified below as open, invoker (call), operator or admin, and every
classified route is then probed with no token, garbage tokens and tokens whose
role is too weak. A route added to the app without being classified here
fails ``test_every_route_is_classified``; one hidden from the document fails
``test_no_route_is_hidden_from_the_openapi_document``.

The POST call routes are probed twice: plain (the node answers the flow calls
on a fast path in front of FastAPI) and with a query string (through FastAPI).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from drop.api import Role
from tests.api.conftest import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

Op = tuple[str, str]  # (METHOD, path template)

#: Served to anyone, on purpose.
OPEN: frozenset[Op] = frozenset(
    {("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/v1/auth/login")}
)
#: FastAPI's own documentation routes; not in the OpenAPI document itself.
DOCS: frozenset[str] = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
#: Calls into a flow: an invoker of that flow may use them (anyone, for a public flow).
INVOKER: frozenset[Op] = frozenset(
    {
        ("POST", "/v1/flows/{flow}/call"),
        ("POST", "/api/v1/{flow}"),
        ("POST", "/v1/flows/{flow}/cast"),
        ("POST", "/v1/pools/{pool}/call"),
        ("POST", "/v1/pools/{pool}/cast"),
        ("GET", "/v1/results/{ref}"),
        ("GET", "/v1/pools/{pool}/events"),
    }
)
#: Managing flows, pools and the node.
OPERATOR: frozenset[Op] = frozenset(
    {
        ("POST", "/v1/flows"),
        ("GET", "/v1/flows"),
        ("GET", "/v1/flows/{flow}"),
        ("DELETE", "/v1/flows/{flow}"),
        ("GET", "/v1/flows/{flow}/yaml"),
        ("POST", "/v1/flows/{flow}/start"),
        ("POST", "/v1/flows/{flow}/stop"),
        ("POST", "/v1/flows/{flow}/scenarios/{scenario}"),
        ("GET", "/v1/pools"),
        ("GET", "/v1/pools/{pool}"),
        ("POST", "/v1/pools/{pool}/scale"),
        ("GET", "/v1/pools/{pool}/logs"),
        ("GET", "/v1/node"),
        ("GET", "/v1/node/stats"),
        ("GET", "/metrics"),
    }
)
#: Users and tokens.
ADMIN: frozenset[Op] = frozenset(
    {
        ("GET", "/v1/auth/tokens"),
        ("DELETE", "/v1/auth/tokens/{token_id}"),
        ("POST", "/v1/auth/users"),
    }
)
GUARDED = INVOKER | OPERATOR | ADMIN

#: Real names for path parameters, so a 401/403 is never a 404 in disguise.
PARAMS = {"flow": "demo", "pool": "echo", "scenario": "start", "token_id": "x", "ref": "echo-1"}
#: Valid bodies, so a 401/403 is never a 422 in disguise.
JSON_BODIES: dict[Op, dict[str, Any]] = {
    ("POST", "/v1/pools/{pool}/scale"): {"size": 1},
    ("POST", "/v1/auth/users"): {"name": "mallory", "role": "admin"},
}
ADD_USER: Op = ("POST", "/v1/auth/users")
GARBAGE = [
    "garbage",
    "drop_0123456789abcdef_notarealtoken",  # well formed, unknown
    "drop_zz_",
    "é" * 600,
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def schema(live: LiveNode) -> dict[str, Any]:
    async with live.client() as c:
        r = await c.get("/openapi.json")
    assert r.status_code == 200, r.text
    return r.json()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ops(schema: dict[str, Any]) -> list[Op]:
    return sorted(
        (method.upper(), path) for path, item in schema["paths"].items() for method in item
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def invoker_all(live: LiveNode) -> str:
    """A token of an invoker limited to no flow (the fixture's invokers are limited)."""
    secret = await live.node.auth.add_user("inv_all", Role.INVOKER)
    return (await live.node.auth.login(secret)).token


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(live: LiveNode) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as c:
        yield c


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


async def send(
    http: httpx.AsyncClient, op: Op, headers: dict[str, Any], query: str = ""
) -> tuple[int, dict[str, str], str]:
    """Make the request for ``op`` with real names and a valid body; never waits
    on an event stream (only its status and headers are read)."""
    method, template = op
    url = template.format(**PARAMS) + query
    kwargs: dict[str, Any] = {"headers": headers}
    if op in JSON_BODIES:
        kwargs["json"] = JSON_BODIES[op]
    elif method == "POST":
        kwargs["content"] = "name: x\nfunc:\n  - name: y\n    cmd: cat\n"
    async with http.stream(method, url, **kwargs) as r:
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            return r.status_code, dict(r.headers), "<event stream>"
        await r.aread()
        return r.status_code, dict(r.headers), r.text


def describe(op: Op) -> str:
    return f"{op[0]} {op[1]}"


def variants(ops: list[Op]) -> list[tuple[Op, str]]:
    """Each op, and each POST call route once more with a query string: the
    node answers the plain flow calls on a fast path in front of FastAPI and
    anything with a query through FastAPI, so both must be checked."""
    out = [(op, "") for op in ops]
    out += [(op, "?timeout=30") for op in ops if op in INVOKER and op[0] == "POST"]
    return out


async def expect_all(
    http: httpx.AsyncClient, ops: list[Op], headers: dict[str, Any], status: int
) -> list[str]:
    """The ops that did not answer ``status`` (with the WWW-Authenticate header
    for a 401), described for a failure message. Requests go out concurrently."""
    todo = variants(ops)
    answers = await asyncio.gather(*(send(http, op, headers, query) for op, query in todo))
    wrong = []
    for (op, query), (code, got_headers, text) in zip(todo, answers, strict=True):
        where = describe(op) + query
        if code != status:
            wrong.append(f"{where}: {code} {text[:200]}")
        elif status == 401 and got_headers.get("www-authenticate") != "Bearer":
            wrong.append(f"{where}: 401 without WWW-Authenticate: Bearer")
    return wrong


# -- the routes ---------------------------------------------------------------


async def test_every_route_is_classified(ops: list[Op]) -> None:
    assert not (OPEN & GUARDED)
    assert not (INVOKER & OPERATOR) and not (INVOKER & ADMIN) and not (OPERATOR & ADMIN)
    unclassified = set(ops) - OPEN - GUARDED
    assert not unclassified, f"classify these routes in test_security.py: {sorted(unclassified)}"
    gone = (OPEN | GUARDED) - set(ops)
    assert not gone, f"routes classified here but no longer served: {sorted(gone)}"


async def test_no_route_is_hidden_from_the_openapi_document(
    live: LiveNode, schema: dict[str, Any]
) -> None:
    # a route with include_in_schema=False would escape the matrix: the app's
    # own route table must hold only documented routes and FastAPI's docs
    server = live.node._server
    assert server is not None
    app = server.config.app
    while not isinstance(app, FastAPI):  # unwrap ASGI middleware (the fast call path)
        app = app.app
    served: set[Op] = set()
    for route in app.routes:
        assert isinstance(route, APIRoute | Route), route
        for method in route.methods or ():
            if route.path in DOCS:
                continue
            if method != "HEAD":
                served.add((method, route.path))
    documented = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
    assert served == documented
    assert {r.path for r in app.routes} - set(schema["paths"]) == DOCS


async def test_the_open_routes_answer_without_a_token(
    live: LiveNode, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).json() == {"status": "ready"}
    for path in DOCS - {"/docs/oauth2-redirect"}:
        assert (await http.get(path)).status_code == 200, path


# -- the matrix ---------------------------------------------------------------


async def test_every_guarded_route_without_a_token_is_401_with_www_authenticate(
    ops: list[Op], http: httpx.AsyncClient
) -> None:
    checked = [op for op in ops if op not in OPEN]
    assert set(checked) == set(ops) - OPEN == GUARDED
    assert await expect_all(http, checked, {}, 401) == []
    # a header that is not a bearer token is no token
    basic = {"Authorization": "Basic YWRtaW46YWRtaW4="}
    assert await expect_all(http, checked, basic, 401) == []
    assert await expect_all(http, checked, {"Authorization": "Bearer"}, 401) == []


@pytest.mark.parametrize("token", GARBAGE, ids=["garbage", "unknown", "malformed", "long"])
async def test_every_guarded_route_with_a_garbage_token_is_401(
    ops: list[Op], http: httpx.AsyncClient, token: str
) -> None:
    checked = [op for op in ops if op not in OPEN]
    assert set(checked) == GUARDED
    headers = {"Authorization": b"Bearer " + token.encode()}
    assert await expect_all(http, checked, headers, 401) == []


async def test_an_invoker_gets_403_on_every_operator_and_admin_route(
    live: LiveNode, ops: list[Op], http: httpx.AsyncClient, invoker_all: str
) -> None:
    checked = [op for op in ops if op in OPERATOR | ADMIN]
    assert set(checked) == set(ops) - OPEN - INVOKER
    # limited to flow demo (the flow these routes are called about), and unlimited
    assert await expect_all(http, checked, bearer(live.invoker), 403) == []
    assert await expect_all(http, checked, bearer(invoker_all), 403) == []
    assert await expect_all(http, checked, bearer(live.invoker_other), 403) == []


async def test_an_invoker_limited_to_another_flow_gets_403_on_every_call_of_demo(
    live: LiveNode, ops: list[Op], http: httpx.AsyncClient
) -> None:
    checked = [op for op in ops if op in INVOKER]
    assert set(checked) == INVOKER
    assert await expect_all(http, checked, bearer(live.invoker_other), 403) == []


async def test_an_operator_gets_403_on_every_admin_route(
    live: LiveNode, ops: list[Op], http: httpx.AsyncClient
) -> None:
    checked = [op for op in ops if op in ADMIN]
    assert set(checked) == ADMIN
    assert await expect_all(http, checked, bearer(live.operator), 403) == []
    # and nothing was done on the way: the user the operator tried to add is new
    r = await http.post("/v1/auth/users", json=JSON_BODIES[ADD_USER], headers=bearer(live.admin))
    assert r.status_code == 201, r.text


async def test_the_right_roles_do_get_through(
    live: LiveNode, ops: list[Op], http: httpx.AsyncClient, invoker_all: str
) -> None:
    # the 403s above are not the only answer these routes know
    for token in (live.invoker, invoker_all, live.operator, live.admin):
        r = await http.post("/v1/flows/demo/call", content="hi", headers=bearer(token))
        assert (r.status_code, r.text) == (200, "hi")
        r = await http.post("/v1/pools/echo/cast", content="hi", headers=bearer(token))
        assert r.status_code == 202, r.text
    reads = [op for op in ops if op in OPERATOR and op[0] == "GET"]
    for token in (live.operator, live.admin):
        assert await expect_all(http, reads, bearer(token), 200) == []
    r = await http.get("/v1/auth/tokens", headers=bearer(live.admin))
    assert r.status_code == 200, r.text


# -- secrets ------------------------------------------------------------------


async def test_a_wrong_secret_is_401_and_not_echoed(http: httpx.AsyncClient) -> None:
    for secret in ("admin.this-is-not-the-secret-0123", "nobody.S3cr3tValue", "no-dot-at-all"):
        r = await http.post("/v1/auth/login", json={"secret": secret})
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert secret not in r.text
        assert "S3cr3t" not in r.text and "not-the-secret" not in r.text


async def test_a_garbage_token_is_not_echoed(http: httpx.AsyncClient) -> None:
    token = "drop_0123456789abcdef_S3cretPartThatMustNotLeak"
    r = await http.get("/v1/node", headers=bearer(token))
    assert r.status_code == 401
    assert "S3cretPart" not in r.text


async def test_a_body_that_is_not_utf8_is_a_4xx_not_a_500(
    live: LiveNode, schema: dict[str, Any], ops: list[Op], http: httpx.AsyncClient
) -> None:
    # FastAPI checks a declared body before the route's own auth check, and
    # its stock handler failed (500) on the raw bytes: anyone could make the
    # node answer 500 and log a traceback, the login route included
    with_body = sorted(
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
    )
    assert ("POST", "/v1/auth/login") in with_body
    posts = [op for op in ops if op[0] == "POST"]
    todo = [
        (method, template, {"Content-Type": content_type, **bearer(token)})
        for token, checked in ((None, posts), (live.admin, with_body))
        for method, template in checked
        for content_type in ("text/plain", "application/json")
    ]
    answers = await asyncio.gather(
        *(
            http.request(method, template.format(**PARAMS), content=b"\xff\xfe", headers=headers)
            for method, template, headers in todo
        )
    )
    wrong = [
        f"{method} {template} ({headers['Content-Type']}, token: {'Authorization' in headers})"
        f": {r.status_code}"
        for (method, template, headers), r in zip(todo, answers, strict=True)
        if not 400 <= r.status_code < 500
    ]
    assert wrong == []


async def test_a_revoked_token_is_401_at_once(live: LiveNode, http: httpx.AsyncClient) -> None:
    admin = bearer(live.admin)
    r = await http.post(
        "/v1/auth/users", json={"name": "revokee", "role": "operator"}, headers=admin
    )
    assert r.status_code == 201, r.text
    r = await http.post("/v1/auth/login", json={"secret": r.json()["secret"]})
    assert r.status_code == 200, r.text
    token, token_id = r.json()["token"], r.json()["id"]
    assert (await http.get("/v1/node", headers=bearer(token))).status_code == 200

    r = await http.delete(f"/v1/auth/tokens/{token_id}", headers=admin)
    assert (r.status_code, r.json()) == (200, {"revoked": token_id})

    r = await http.get("/v1/node", headers=bearer(token))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    listed = (await http.get("/v1/auth/tokens", headers=admin)).json()
    assert token_id not in {t["id"] for t in listed}
    assert (await http.delete(f"/v1/auth/tokens/{token_id}", headers=admin)).status_code == 404


async def test_the_token_listing_has_ids_but_no_token_strings(
    live: LiveNode, http: httpx.AsyncClient, invoker_all: str
) -> None:
    r = await http.get("/v1/auth/tokens", headers=bearer(live.admin))
    assert r.status_code == 200, r.text
    listed = r.json()
    tokens = [live.admin, live.operator, live.invoker, live.invoker_other, invoker_all]
    ids = {t.split("_")[1] for t in tokens}
    assert ids <= {entry["id"] for entry in listed}
    for entry in listed:
        assert set(entry) == {"id", "user", "role", "flows", "created", "expires"}
    for token in tokens:
        assert token not in r.text
        assert token.split("_", 2)[2] not in r.text  # the secret part


async def test_no_read_route_shows_a_token_or_the_admin_secret(
    live: LiveNode, ops: list[Op], http: httpx.AsyncClient
) -> None:
    secret = (live.node.config.data_dir / "secrets" / "initial-admin").read_text().strip()
    needles = {
        "admin secret": secret,
        "admin secret's random part": secret.partition(".")[2],
    }
    for name, token in (("admin", live.admin), ("operator", live.operator)):
        needles[f"{name} token"] = token
        needles[f"{name} token's random part"] = token.split("_", 2)[2]
    reads = [op for op in ops if op[0] == "GET" and op != ("GET", "/v1/pools/{pool}/events")]
    assert ("GET", "/v1/node") in reads and ("GET", "/v1/node/stats") in reads
    for op in reads:
        code, _, text = await send(http, op, bearer(live.admin))
        assert code in (200, 404), f"{describe(op)}: {code} {text[:200]}"
        for what, needle in needles.items():
            assert needle not in text, f"{describe(op)} shows the {what}"


# -- the public flow ----------------------------------------------------------


async def test_the_public_flow_is_callable_without_a_token(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/flows/open/call", content="hello")
    assert (r.status_code, r.text) == (200, "HELLO")
    r = await http.post("/api/v1/open", content="hello")
    assert (r.status_code, r.text) == (200, "HELLO")
    r = await http.post("/v1/pools/shout/call", content="hi")
    assert (r.status_code, r.text) == (200, "HI")
    r = await http.post("/v1/flows/open/call", json={"message": "json"})
    assert (r.status_code, r.json()) == (200, {"result": "JSON"})
    assert (await http.post("/v1/flows/open/cast", content="x")).status_code == 202
    assert (await http.post("/v1/pools/shout/cast", content="x")).status_code == 202
    r = await http.post("/v1/flows/open/call?async=1", content="later")
    assert r.status_code == 202, r.text
    ref = r.json()["ref"]
    for _ in range(200):
        r = await http.get(f"/v1/results/{ref}")
        if r.status_code != 202:
            break
        await asyncio.sleep(0.01)
    assert (r.status_code, r.json()["result"]) == (200, "LATER")


async def test_the_public_flow_is_still_managed_only_by_operators(
    live: LiveNode, http: httpx.AsyncClient
) -> None:
    for method, path in (
        ("GET", "/v1/flows/open"),
        ("GET", "/v1/flows/open/yaml"),
        ("POST", "/v1/flows/open/stop"),
        ("DELETE", "/v1/flows/open"),
        ("GET", "/v1/pools/shout"),
        ("GET", "/v1/pools/shout/logs"),
    ):
        r = await http.request(method, path)
        assert r.status_code == 401, f"{method} {path}: {r.status_code}"
        r = await http.request(method, path, headers=bearer(live.invoker_other))
        assert r.status_code == 403, f"{method} {path}: {r.status_code}"
    r = await http.post(
        "/v1/pools/shout/scale", json={"size": 2}, headers=bearer(live.invoker_other)
    )
    assert r.status_code == 403
    r = await http.get("/v1/flows/open", headers=bearer(live.operator))
    assert (r.status_code, r.json()["state"]) == (200, "running")

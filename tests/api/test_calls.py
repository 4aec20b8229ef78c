"""Calls, errors, administration, events and metrics over real HTTP to a live node.

The node is the module-scoped ``live`` fixture (``conftest.py``): flow ``demo``
with pools echo, slow (timeout 500ms, queue 2) and crash (exits 3 on "die"),
and the public flow ``open``. Tests that break a worker leave the pool idle
with a live worker again before they return, so the next test starts clean.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from drop.pool import PoolState
from tests.api.conftest import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

TEXT = "text/plain; charset=utf-8"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true, polling; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not true within {timeout}s"
        await asyncio.sleep(0.02)


async def settled(live: LiveNode, pool: str) -> None:
    """Wait until ``pool`` runs one worker with nothing queued or in flight."""

    async def check() -> bool:
        _, target = live.node.registry.pool(pool)
        snap = target.snapshot()
        return (snap.state, snap.workers, snap.running, snap.queued) == ("running", 1, 0, 0)

    await eventually(check)


# -- calls --------------------------------------------------------------------------


async def test_a_text_body_gets_the_result_as_text(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", content="hello world")
    assert (r.status_code, r.headers["content-type"], r.text) == (200, TEXT, "hello world")


async def test_one_trailing_newline_of_a_text_body_is_not_part_of_the_message(
    live: LiveNode,
) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", content="line\n")
    assert (r.status_code, r.text) == (200, "line")


async def test_a_json_body_gets_a_json_result(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", json={"message": "x"})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
    assert r.json() == {"result": "x"}


async def test_the_original_call_url_answers_like_the_flow_call(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        text = await c.post("/api/v1/demo", content="hello")
        as_json = await c.post("/api/v1/demo", json={"message": "x"})
        unknown = await c.post("/api/v1/nope", content="hello")
    assert (text.status_code, text.headers["content-type"], text.text) == (200, TEXT, "hello")
    assert (as_json.status_code, as_json.json()) == (200, {"result": "x"})
    assert unknown.status_code == 404


async def test_a_pool_can_be_called_directly(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/pools/crash/call", content="fine")
    assert (r.status_code, r.text) == (200, "ok:fine")


async def test_a_public_flow_needs_no_token(live: LiveNode) -> None:
    async with live.client() as c:
        r = await c.post("/v1/flows/open/call", content="quiet")
    assert (r.status_code, r.text) == (200, "QUIET")


async def test_an_async_call_answers_a_ref_whose_result_comes_later(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", params={"async": "1"}, content="later")
        assert r.status_code == 202
        ref = r.json()["ref"]
        assert re.fullmatch(r"echo-\d+", ref), ref
        assert r.json() == {"ref": ref, "result": f"/v1/results/{ref}"}

        outcome: dict[str, str] = {}

        async def done() -> bool:
            got = await c.get(f"/v1/results/{ref}")
            assert got.status_code in (200, 202), got.text
            outcome.update(got.json())
            return got.status_code == 200

        await eventually(done)
    assert outcome == {"ref": ref, "status": "done", "result": "later"}


async def test_an_async_call_that_fails_reports_the_error(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/pools/crash/call", params={"async": "1"}, content="die")
        assert r.status_code == 202
        ref = r.json()["ref"]
        outcome: dict[str, str] = {}

        async def done() -> bool:
            got = await c.get(f"/v1/results/{ref}")
            outcome.update(got.json())
            return got.status_code == 200

        await eventually(done)
    assert outcome == {
        "ref": ref,
        "status": "error",
        "error": "worker crash/0 exited with status 3; last stderr: bye",
    }
    await settled(live, "crash")


@pytest.mark.parametrize("ref", ["echo-999999", "nosuchpool-1", "noref"])
async def test_an_unknown_ref_is_404(live: LiveNode, ref: str) -> None:
    async with live.client(live.invoker) as c:
        r = await c.get(f"/v1/results/{ref}")
    assert r.status_code == 404
    assert r.json() == {"error": "NotFound", "message": f"no result {ref!r} (unknown or expired)"}


async def test_a_batch_answers_one_ndjson_outcome_per_line_in_order(live: LiveNode) -> None:
    await settled(live, "crash")
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/pools/crash/call", params={"batch": "1"}, content="a\nb\ndie\nc\nd\n")
    assert (r.status_code, r.headers["content-type"]) == (200, "application/x-ndjson")
    assert r.text.endswith("\n")
    assert [json.loads(line) for line in r.text.splitlines()] == [
        {"result": "ok:a"},
        {"result": "ok:b"},
        {
            "error": "WorkerCrashed",
            "message": "worker crash/0 exited with status 3; last stderr: bye",
            "status": 502,
        },
        {"result": "ok:c"},
        {"result": "ok:d"},
    ]
    await settled(live, "crash")


async def test_a_batch_to_a_flow_goes_to_its_entry_pool(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", params={"batch": "1"}, content="1\n2\n3")
    assert r.status_code == 200
    assert r.text == '{"result": "1"}\n{"result": "2"}\n{"result": "3"}\n'


async def test_a_batch_splits_on_newlines_only(live: LiveNode) -> None:
    # Lines end at "\n" alone, as for `drop run`: a form feed or U+2028 inside
    # a line is part of its message, not a line break.
    lines = ["a\x0cb", "c\u2028d", "", "e"]
    async with live.client(live.invoker) as c:
        r = await c.post(
            "/v1/flows/demo/call", params={"batch": "1"}, content="\n".join(lines) + "\n"
        )
        empty = await c.post("/v1/flows/demo/call", params={"batch": "1"}, content="")
        crlf = await c.post("/v1/flows/demo/call", params={"batch": "1"}, content="x\r\ny\r\n")
    assert r.status_code == 200
    assert [json.loads(line) for line in r.text.split("\n")[:-1]] == [
        {"result": line} for line in lines
    ]
    assert (empty.status_code, empty.text) == (200, "")
    assert crlf.text == '{"result": "x"}\n{"result": "y"}\n'


# -- errors -------------------------------------------------------------------------


async def test_an_unknown_flow_is_404_naming_the_installed_flows(live: LiveNode) -> None:
    async with live.client(live.admin) as c:
        r = await c.post("/v1/flows/nope/call", content="x")
    assert r.status_code == 404
    assert r.json() == {
        "error": "NotFound",
        "message": "no flow 'nope' installed (flows: demo, open)",
    }


async def test_an_unknown_pool_is_404_naming_the_running_pools(live: LiveNode) -> None:
    async with live.client(live.admin) as c:
        r = await c.post("/v1/pools/nope/call", content="x")
    assert r.status_code == 404
    assert r.json() == {
        "error": "NotFound",
        "message": "no running pool 'nope' (pools: crash, echo, shout, slow)",
    }


async def test_a_worker_crash_is_502_with_the_exit_status_and_stderr(live: LiveNode) -> None:
    await settled(live, "crash")
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/pools/crash/call", content="die")
    assert r.status_code == 502
    assert r.json() == {
        "error": "WorkerCrashed",
        "message": "worker crash/0 exited with status 3; last stderr: bye",
    }
    await settled(live, "crash")
    # the pool restarted the worker and answers again
    async with live.client(live.invoker) as c:
        assert (await c.post("/v1/pools/crash/call", content="back")).text == "ok:back"


async def test_a_worker_timeout_is_504(live: LiveNode) -> None:
    await settled(live, "slow")
    async with live.client(live.invoker) as c:
        started = time.monotonic()
        r = await c.post("/v1/pools/slow/call", content="sleep")
        took = time.monotonic() - started
    assert r.status_code == 504
    assert r.json() == {
        "error": "WorkerTimeout",
        "message": "worker slow/0 timed out after 0.5s",
    }
    assert took < 3.0  # the pool's 500ms, not the worker's 5s sleep
    await settled(live, "slow")


async def test_a_call_timeout_parameter_is_504(live: LiveNode) -> None:
    await settled(live, "slow")
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/pools/slow/call", params={"timeout": "0.1"}, content="sleep")
    assert r.status_code == 504
    assert r.json() == {"error": "WorkerTimeout", "message": "pool slow: no result within 0.1s"}
    await settled(live, "slow")  # the worker itself is expired at 500ms and restarted


async def test_a_full_pool_is_429_with_retry_after(live: LiveNode) -> None:
    await settled(live, "slow")
    async with live.client(live.invoker) as c:
        # one message in flight (the worker sleeps on it), two queued: queue 2 is full
        busy = await c.post("/v1/pools/slow/call", params={"async": "1"}, content="sleep")
        assert busy.status_code == 202
        for message in ("q1", "q2"):
            cast = await c.post("/v1/pools/slow/cast", content=message)
            assert (cast.status_code, cast.json()) == (202, {"status": "accepted"})
        full = await c.post("/v1/pools/slow/call", content="one more")
        info = await c.get("/v1/pools/slow", headers={"Authorization": f"Bearer {live.operator}"})
    assert full.status_code == 429
    assert full.headers["retry-after"] == "1"
    assert full.json() == {
        "error": "PoolFull",
        "message": "pool slow is full (2 messages queued); retry later, add workers or raise queue",
    }
    assert info.json()["nomore"] >= 1
    await settled(live, "slow")


async def test_a_batch_that_does_not_fit_is_429(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/pools/slow/call", params={"batch": "1"}, content="a\nb\nc")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"] == "PoolFull"


async def test_a_body_over_max_body_is_413(live: LiveNode) -> None:
    saved = live.node.max_body
    live.node.max_body = 16
    try:
        async with live.client(live.invoker) as c:
            fits = await c.post("/v1/flows/demo/call", content="x" * 16)
            declared = await c.post("/v1/flows/demo/call", content="x" * 17)

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
                for _ in range(5):
                    yield b"xxxxxx"

            streamed = await c.post("/v1/flows/demo/call", content=chunks())
    finally:
        live.node.max_body = saved
    assert (fits.status_code, fits.text) == (200, "x" * 16)
    assert declared.status_code == 413
    assert declared.json() == {
        "error": "TooLarge",
        "message": "body of 17 bytes is over the limit of 16",
    }
    assert streamed.status_code == 413
    assert streamed.json() == {
        "error": "TooLarge",
        "message": "body is over the limit of 16 bytes",
    }


async def test_a_body_that_is_not_utf8_is_400(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", content=b"ok\xff\xfe")
    assert r.status_code == 400
    assert r.json() == {"error": "ProtocolError", "message": "the body is not UTF-8 (byte 2)"}


async def test_a_json_body_that_does_not_parse_is_400(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post(
            "/v1/flows/demo/call",
            content=b'{"message": ',
            headers={"Content-Type": "application/json"},
        )
    assert r.status_code == 400
    assert r.json()["error"] == "ProtocolError"
    assert r.json()["message"].startswith("the JSON body does not parse: ")


@pytest.mark.parametrize("body", ['{"msg": "x"}', '["x"]', '{"message": 3}'])
async def test_a_json_body_without_a_message_string_is_400(live: LiveNode, body: str) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post(
            "/v1/flows/demo/call", content=body, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 400
    assert r.json() == {"error": "ProtocolError", "message": 'a JSON body is {"message": "..."}'}


async def test_a_message_with_a_newline_is_400(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.post("/v1/flows/demo/call", json={"message": "two\nlines"})
    assert r.status_code == 400
    assert r.json() == {
        "error": "ProtocolError",
        "message": "pool echo: a message is one line; this one holds a newline",
    }


async def test_installing_a_broken_flow_is_422_listing_every_problem(live: LiveNode) -> None:
    broken = "name: broken\nfunc:\n  - name: p1\n    cmd: cat\n    size: many\n  - name: p2\n"
    async with live.client(live.operator) as c:
        r = await c.post("/v1/flows", content=broken, headers={"Content-Type": "text/plain"})
        listed = await c.get("/v1/flows")
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "SpecError"
    assert body["problems"] == [
        "body:5: func[0] (p1).size: invalid size 'many': write a number (size: 4) "
        "or a range (size: {min: 1, max: 8})",
        "body:6: func[1] (p2).cmd: required field is missing",
    ]
    assert body["message"] == "\n".join(body["problems"])
    assert [f["name"] for f in listed.json()] == ["demo", "open"]


async def test_installing_yaml_that_does_not_parse_is_422(live: LiveNode) -> None:
    async with live.client(live.operator) as c:
        r = await c.post(
            "/v1/flows", content="name: x\nfunc: [\n", headers={"Content-Type": "text/plain"}
        )
    assert r.status_code == 422
    assert r.json()["problems"] == [
        "body:3:1: YAML syntax error: expected the node content, but found '<stream end>'"
    ]


async def test_installing_a_flow_whose_pool_name_is_taken_is_409(live: LiveNode) -> None:
    clash = "name: copycat\nfunc:\n  - name: echo\n    cmd: cat\n  - name: fresh\n    cmd: cat\n"
    async with live.client(live.operator) as c:
        r = await c.post("/v1/flows", content=clash, headers={"Content-Type": "text/plain"})
        again = await c.post(
            "/v1/flows",
            content="name: demo\nfunc:\n  - name: other\n    cmd: cat\n",
            headers={"Content-Type": "text/plain"},
        )
        listed = await c.get("/v1/flows")
    assert r.status_code == 409
    assert r.json() == {
        "error": "Conflict",
        "message": "flow copycat: pool names already used: echo (flow demo)",
    }
    assert again.status_code == 409
    assert again.json()["message"] == (
        "flow demo is installed; remove it first or install with replace"
    )
    assert [f["name"] for f in listed.json()] == ["demo", "open"]


# A call without a query string takes the node's fast ASGI path; any query
# (here a generous timeout) goes through the FastAPI route. Both must answer alike
# (JSON bodies compared as JSON: the two serialise with different spacing).
PARITY = [
    ("text", "/v1/flows/demo/call", {"content": "same"}, "invoker"),
    ("json", "/v1/flows/demo/call", {"json": {"message": "same"}}, "invoker"),
    ("original", "/api/v1/demo", {"content": "same"}, "invoker"),
    ("no token", "/v1/flows/demo/call", {"content": "x"}, None),
    ("other flow", "/v1/flows/demo/call", {"content": "x"}, "invoker_other"),
    ("unknown flow", "/v1/flows/nope/call", {"content": "x"}, "invoker"),
    ("public", "/v1/flows/open/call", {"content": "loud"}, None),
    ("not utf-8", "/v1/flows/demo/call", {"content": b"\xff"}, "invoker"),
    ("newline", "/v1/flows/demo/call", {"json": {"message": "a\nb"}}, "invoker"),
    (
        "bad json",
        "/v1/flows/demo/call",
        {"content": b"{", "headers": {"Content-Type": "application/json"}},
        "invoker",
    ),
]


@pytest.mark.parametrize(
    ("path", "kwargs", "who"), [p[1:] for p in PARITY], ids=[p[0] for p in PARITY]
)
async def test_the_fast_call_path_answers_like_the_fastapi_route(
    live: LiveNode, path: str, kwargs: dict[str, object], who: str | None
) -> None:
    token = getattr(live, who) if who else None
    async with live.client(token) as c:
        fast = await c.post(path, **kwargs)  # type: ignore[arg-type]
        routed = await c.post(path, params={"timeout": "30"}, **kwargs)  # type: ignore[arg-type]
    assert fast.status_code == routed.status_code
    assert fast.headers["content-type"] == routed.headers["content-type"]
    assert fast.headers.get("www-authenticate") == routed.headers.get("www-authenticate")
    if fast.headers["content-type"] == "application/json":
        assert fast.json() == routed.json()
    else:
        assert fast.content == routed.content


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("?timeout=30", id="fastapi"),
        pytest.param("", id="fast path"),
    ],
)
async def test_a_body_cut_short_by_a_disconnect_is_not_called(live: LiveNode, query: str) -> None:
    _, echo = live.node.registry.pool("echo")
    before = echo.stats.ok
    port = int(live.url.rpartition(":")[2])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /v1/flows/demo/call{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {live.invoker}\r\nContent-Type: text/plain\r\n"
        "Content-Length: 100\r\n\r\npartial".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.5)
    assert echo.stats.ok == before


async def test_a_weak_or_missing_token_is_refused(live: LiveNode) -> None:
    async with live.client() as anonymous:
        r = await anonymous.post("/v1/flows/demo/call", content="x")
    assert (r.status_code, r.headers["www-authenticate"]) == (401, "Bearer")
    async with live.client(live.invoker_other) as other:
        r = await other.post("/v1/flows/demo/call", content="x")
    assert r.status_code == 403
    async with live.client(live.invoker) as invoker:
        r = await invoker.post("/v1/flows", content="name: x\n")
    assert r.status_code == 403


# -- administration -----------------------------------------------------------------

FUNCTION = """\
import sys

for line in sys.stdin:
    message = line.rstrip("\\n")
    sys.stderr.write(f"got: {message}\\n")
    sys.stderr.flush()
    sys.stdout.write(f"fn:{message}\\n")
    sys.stdout.flush()
"""

ADMIN_FLOW = f"""\
name: adm
func:
  - name: adm_fn
    cmd: {sys.executable} fn.py
scenarios:
  greet:
    - call: {{pool: adm_fn, message: hi}}
    - call: {{pool: adm_fn, message: there}}
"""


async def test_a_flow_goes_through_its_whole_life_over_the_api(
    live: LiveNode, tmp_path: Path
) -> None:
    (tmp_path / "fn.py").write_text(FUNCTION)
    async with live.client(live.operator) as op, live.client(live.admin) as admin:
        # install: stopped until started
        r = await op.post(
            "/v1/flows",
            params={"base_dir": str(tmp_path)},
            content=ADMIN_FLOW,
            headers={"Content-Type": "text/plain"},
        )
        assert r.status_code == 201, r.text
        installed = r.json()
        assert {k: installed[k] for k in ("name", "state", "desired", "entry", "base_dir")} == {
            "name": "adm",
            "state": "stopped",
            "desired": "stopped",
            "entry": "adm_fn",
            "base_dir": str(tmp_path),
        }
        assert installed["scenarios"] == ["greet", "start", "stop"]
        assert installed["pools"] == [{"pool": "adm_fn", "flow": "adm", "state": "stopped"}]
        assert (await op.get("/v1/flows/adm/yaml")).text == ADMIN_FLOW

        # start
        r = await op.post("/v1/flows/adm/start")
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["desired"]) == ("running", "running")
        assert (await admin.post("/v1/flows/adm/call", content="one")).text == "fn:one"

        # info: pools with counters
        info = (await op.get("/v1/flows/adm")).json()
        assert info["state"] == "running"
        (pool,) = info["pools"]
        assert {k: pool[k] for k in ("flow", "pool", "state", "workers", "ok", "error")} == {
            "flow": "adm",
            "pool": "adm_fn",
            "state": "running",
            "workers": 1,
            "ok": 1,
            "error": 0,
        }

        # a named scenario returns the results of its call steps
        r = await op.post("/v1/flows/adm/scenarios/greet")
        assert r.status_code == 200, r.text
        assert r.json() == {"flow": "adm", "scenario": "greet", "results": ["fn:hi", "fn:there"]}
        r = await op.post("/v1/flows/adm/scenarios/nope")
        assert r.status_code == 404

        # scale
        r = await op.post("/v1/pools/adm_fn/scale", json={"size": 3})
        assert r.status_code == 200, r.text
        assert (r.json()["pool"], r.json()["workers"]) == ("adm_fn", 3)
        pool_now = (await op.get("/v1/pools/adm_fn")).json()
        assert pool_now["workers"] == 3
        assert len(set(pool_now["worker_pids"])) == 3
        r = await op.post("/v1/pools/adm_fn/scale", json={"size": 1})
        assert r.json()["workers"] == 1

        # logs: what the function wrote to stderr
        async def logged() -> bool:
            text = (await op.get("/v1/pools/adm_fn/logs")).text
            return all(f"got: {m}" in text for m in ("one", "hi", "there"))

        await eventually(logged)
        lines = (await op.get("/v1/pools/adm_fn/logs", params={"lines": 1})).text
        assert lines.count("\n") == 1

        # stop: the flow stays installed, stopped; a call is 503
        r = await op.post("/v1/flows/adm/stop")
        assert r.status_code == 200, r.text
        assert (r.json()["state"], r.json()["desired"]) == ("stopped", "stopped")
        r = await admin.post("/v1/flows/adm/call", content="x")
        assert r.status_code == 503
        assert r.json() == {
            "error": "PoolStopped",
            "message": "flow adm is stopped; start it: POST /v1/flows/adm/start",
        }
        assert (await op.post("/v1/flows/adm/scenarios/greet")).status_code == 503
        assert (await op.get("/v1/pools/adm_fn")).status_code == 404

        # remove: gone
        r = await op.delete("/v1/flows/adm")
        assert (r.status_code, r.json()) == (200, {"removed": "adm"})
        gone = await op.get("/v1/flows/adm")
        assert gone.status_code == 404
        assert gone.json()["message"] == "no flow 'adm' installed (flows: demo, open)"
        assert (await admin.post("/v1/flows/adm/call", content="x")).status_code == 404
        assert (await op.delete("/v1/flows/adm")).status_code == 404


async def test_install_with_start_runs_the_flow_at_once(live: LiveNode, tmp_path: Path) -> None:
    (tmp_path / "fn.py").write_text(FUNCTION)
    text = ADMIN_FLOW.replace("adm", "quick")
    async with live.client(live.operator) as op:
        r = await op.post(
            "/v1/flows",
            params={"base_dir": str(tmp_path), "start": "true"},
            content=text,
            headers={"Content-Type": "text/plain"},
        )
        try:
            assert (r.status_code, r.json()["state"]) == (201, "running")
            assert (await op.post("/v1/flows/quick/call", content="go")).text == "fn:go"
        finally:
            await op.delete("/v1/flows/quick")
        missing = await op.post(
            "/v1/flows",
            params={"base_dir": str(tmp_path / "nowhere")},
            content=text,
            headers={"Content-Type": "text/plain"},
        )
    assert missing.status_code == 404


# -- events -------------------------------------------------------------------------


async def test_events_stream_only_the_lines_the_filter_passes(live: LiveNode) -> None:
    _, echo = live.node.registry.pool("echo")
    listeners = len(echo._listeners)
    async with live.client(live.invoker) as c:
        async with asyncio.timeout(15):
            async with c.stream(
                "GET", "/v1/pools/echo/events", params={"filter": "label:x"}
            ) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                assert await anext(lines) == ": connected"
                for message in ("tag:x,1", "tag:y,2", "tag:x,3"):
                    assert (await c.post("/v1/pools/echo/call", content=message)).text == message
                data: list[str] = []
                while len(data) < 2:
                    line = await anext(lines)
                    if line.startswith("data: "):
                        data.append(line.removeprefix("data: "))
                    else:
                        assert line == "" or line.startswith(":"), line
    assert data == ["tag:x,1", "tag:x,3"]

    # closing the stream removes its listener from the pool
    async def released() -> bool:
        return len(echo._listeners) == listeners

    await eventually(released, timeout=5)


async def test_a_bad_events_filter_is_400(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        r = await c.get("/v1/pools/echo/events", params={"filter": "re:("})
    assert r.status_code == 400
    assert r.json()["error"] == "ProtocolError"


# -- metrics and health -------------------------------------------------------------


async def test_metrics_carry_the_pools_counters_and_latency(live: LiveNode) -> None:
    async with live.client(live.invoker) as c:
        for i in range(3):
            assert (await c.post("/v1/pools/echo/call", content=f"m{i}")).status_code == 200
    async with live.client(live.operator) as op:
        ok = (await op.get("/v1/pools/echo")).json()["ok"]
        r = await op.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    labels = 'flow="demo",node="testnode",pool="echo"'
    # prometheus_client writes a counter family drop_pool_ok as drop_pool_ok_total
    ok_lines = [line for line in lines if line.startswith("drop_pool_ok")]
    assert f"drop_pool_ok_total{{{labels}}} {float(ok)}" in ok_lines, ok_lines
    assert ok >= 3
    prefix = 'drop_pool_latency_seconds_bucket{flow="demo",le="'
    buckets = [
        line.removeprefix(prefix).split('",node="testnode",pool="echo"} ')
        for line in lines
        if line.startswith(prefix) and '",node="testnode",pool="echo"} ' in line
    ]
    assert len(buckets) == 27, buckets  # powers of two of microseconds, then +Inf
    assert buckets[0] == ["1e-06", buckets[0][1]]
    assert buckets[-1] == ["+Inf", f"{float(ok)}"]
    counts = [float(count) for _, count in buckets]
    assert counts == sorted(counts)  # cumulative
    assert f"drop_pool_latency_seconds_count{{{labels}}} {float(ok)}" in lines
    assert any(line.startswith('drop_node_memory_bytes{node="testnode"} ') for line in lines)


async def test_metrics_need_an_operator(live: LiveNode) -> None:
    async with live.client() as c:
        assert (await c.get("/metrics")).status_code == 401
    async with live.client(live.invoker) as c:
        assert (await c.get("/metrics")).status_code == 403


async def test_health_and_readiness_answer_without_a_token(live: LiveNode) -> None:
    async with live.client() as c:
        health = await c.get("/healthz")
        ready = await c.get("/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_the_client_library_talks_to_the_node(live: LiveNode) -> None:
    from drop.api.client import ApiError, Client

    def use() -> tuple[str, str, int]:
        client = Client(live.url, token=live.admin, timeout=10)
        try:
            text = client.call("demo", "via client")
            batch = client.call("crash", "p\nq", pool=True, batch=True)
            try:
                client.call("nope", "x")
            except ApiError as exc:
                status = exc.status
            return text, batch, status
        finally:
            client.close()

    text, batch, status = await asyncio.to_thread(use)
    assert text == "via client"
    assert batch == '{"result": "ok:p"}\n{"result": "ok:q"}\n'
    assert status == 404


async def test_starting_a_degraded_flow_starts_its_failed_pool_again(live: LiveNode) -> None:
    async with live.client(live.operator) as c:
        # Given the crash pool driven past its restart budget
        _, crash = live.node.registry.pool("crash")
        for _ in range(20):
            if crash.state is PoolState.FAILED:
                break
            await c.post("/v1/pools/crash/call", content="die")
        assert crash.state is PoolState.FAILED
        # Then the flow shows it, and a call says the pool failed
        assert (await c.get("/v1/flows/demo")).json()["state"] == "degraded"
        assert (await c.post("/v1/pools/crash/call", content="x")).status_code == 503
        # When the flow is started again
        r = await c.post("/v1/flows/demo/start")
        # Then the pool runs with a fresh budget and answers
        assert r.json()["state"] == "running"
        assert (await c.post("/v1/pools/crash/call", content="x")).text == "ok:x"


async def test_a_flow_file_over_1_mib_is_refused_without_echoing_it(live: LiveNode) -> None:
    async with live.client(live.operator) as c:
        r = await c.post(
            "/v1/flows", content="#" * (2 << 20), headers={"Content-Type": "text/plain"}
        )
    assert r.status_code == 413
    assert len(r.content) < 500

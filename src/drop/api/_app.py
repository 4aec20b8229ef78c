"""The node's HTTP API: calls, events, administration, metrics.

Every route but ``/healthz``, ``/readyz``, login and the calls of a
``public: true`` flow needs a bearer token; a token whose role is too weak
gets 403. DROP errors become statuses a client can act on (``_errors.py``):
a full pool is 429 with ``Retry-After``, a timeout 504, a worker error 502.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request, Response, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from drop import __version__
from drop.api._auth import Auth, AuthError, Role
from drop.api._calls import (
    Forbidden,
    TooLarge,
    Unauthorized,
    authorize,
    parse_message,
    running_entry,
)
from drop.api._errors import drop_error_handler, error_body, status_of
from drop.api._fast import FastCalls
from drop.api._metrics import metrics_text
from drop.bus import compile_filter
from drop.errors import DropError, NotFound, PoolStopped, ProtocolError
from drop.pool import Pool

#: Largest flow file accepted over HTTP.
_MAX_FLOW = 1 << 20
#: Events buffered per SSE client before the slowest lines are dropped.
_EVENT_BUFFER = 1000


class NodeHandle(Protocol):
    """What the API needs from the node (``drop.node.Node`` provides it)."""

    auth: Auth
    registry: Any
    name: str
    ready: bool
    max_body: int

    def info(self) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...


class ScaleBody(BaseModel):
    size: int = Field(ge=0, le=1024)


class LoginBody(BaseModel):
    secret: str = Field(min_length=1, max_length=1024)
    ttl: float | None = Field(None, gt=0, le=30 * 86400)


class UserBody(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    role: Role
    flows: list[str] | None = None


class CallOptions:
    """The query of the call routes: ``?async=1``, ``?batch=1``, ``?timeout=S``."""

    def __init__(
        self,
        is_async: Annotated[bool, Query(alias="async")] = False,
        batch: bool = False,
        timeout: Annotated[float | None, Query(gt=0, le=3600)] = None,
    ) -> None:
        self.is_async = is_async
        self.batch = batch
        self.timeout = timeout


CallOpts = Annotated[CallOptions, Depends()]
_bearer = HTTPBearer(auto_error=False, description="a token from POST /v1/auth/login")
Creds = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}


def create_asgi(node: NodeHandle) -> FastCalls:
    """The ASGI application a node serves: the fast call path in front of
    ``create_app(node)``."""
    return FastCalls(create_app(node), node)


def create_app(node: NodeHandle) -> FastAPI:
    """The FastAPI application of ``node``."""
    app = FastAPI(
        title="DROP node API",
        version=__version__,
        description="Call flows and pools, stream their events, manage the node.",
    )
    app.add_exception_handler(DropError, drop_error_handler)
    registry = node.registry

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler answers 500 when an error holds the raw bytes of
        # a body that is not UTF-8 (any route with a body, login included)
        text = {bytes: lambda b: b.decode("utf-8", "backslashreplace")}
        errors = jsonable_encoder(exc.errors(), custom_encoder=text)
        return JSONResponse({"detail": errors}, status_code=422)

    async def need(
        creds: HTTPAuthorizationCredentials | None, role: Role, flow: str | None = None
    ) -> None:
        await authorize(node.auth, creds.credentials if creds else None, role, flow)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return JSONResponse(
            {"error": "Unauthorized", "message": str(exc)},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"error": "Forbidden", "message": str(exc)}, status_code=403)

    async def read_message(request: Request) -> tuple[str, bool]:
        """The message of a call: a text body, or JSON ``{"message": ...}``."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > node.max_body:
            raise TooLarge(f"body of {length} bytes is over the limit of {node.max_body}")
        raw = b""
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > node.max_body:
                    raise TooLarge(f"body is over the limit of {node.max_body} bytes")
        except ClientDisconnect:
            raise ProtocolError("the client disconnected before its body was whole") from None
        return parse_message(raw, request.headers.get("content-type", ""))

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse({"error": "TooLarge", "message": str(exc)}, status_code=413)

    async def invoke(pool: Pool, request: Request, options: CallOptions) -> Response:
        message, as_json = await read_message(request)
        if options.batch:
            # lines end at "\n" (or "\r\n"), as for `drop run`: str.splitlines
            # would also split at \f, U+2028..., breaking one outcome per line
            messages = [m.removesuffix("\r") for m in message.split("\n")] if message else []
            outcomes = await pool.submit_batch(messages)
            lines = []
            for outcome in outcomes:
                if isinstance(outcome, DropError):
                    lines.append(json.dumps({**error_body(outcome), "status": status_of(outcome)}))
                else:
                    lines.append(json.dumps({"result": outcome}))
            return PlainTextResponse(
                "".join(line + "\n" for line in lines), media_type="application/x-ndjson"
            )
        if options.is_async:
            ref = pool.submit_ref(message)
            return JSONResponse({"ref": ref, "result": f"/v1/results/{ref}"}, status_code=202)
        result = await pool.call(message, options.timeout)
        if as_json:
            return JSONResponse({"result": result})
        return PlainTextResponse(result)

    def running_flow_entry(flow: str) -> Pool:
        return running_entry(registry, flow)

    async def call_guard(creds: HTTPAuthorizationCredentials | None, flow: str) -> None:
        inst = registry.get(flow)
        if not inst.loaded.spec.public:
            await need(creds, Role.INVOKER, flow)

    # -- calls ------------------------------------------------------------------

    @app.post("/v1/flows/{flow}/call", responses={200: _TEXT}, tags=["call"])
    async def call_flow(
        flow: str,
        request: Request,
        creds: Creds,
        options: CallOpts,
    ) -> Response:
        """Send a message (the body) to the flow's entry pool and wait for its result.

        ``?async=1`` answers 202 with a ref; ``?batch=1`` takes one message per
        line and answers NDJSON, one outcome per line, in order."""
        await call_guard(creds, flow)
        return await invoke(running_flow_entry(flow), request, options)

    @app.post("/api/v1/{flow}", responses={200: _TEXT}, tags=["call"])
    async def call_flow_original(flow: str, request: Request, creds: Creds) -> Response:
        """The original DROP's call URL: same as ``POST /v1/flows/{flow}/call``."""
        await call_guard(creds, flow)
        return await invoke(running_flow_entry(flow), request, CallOptions())

    @app.post("/v1/flows/{flow}/cast", status_code=202, tags=["call"])
    async def cast_flow(flow: str, request: Request, creds: Creds) -> dict[str, str]:
        """Send a message to the flow's entry pool without waiting."""
        await call_guard(creds, flow)
        pool = running_flow_entry(flow)
        message, _ = await read_message(request)
        pool.cast(message)
        return {"status": "accepted"}

    @app.post("/v1/pools/{pool}/call", responses={200: _TEXT}, tags=["call"])
    async def call_pool(
        pool: str,
        request: Request,
        creds: Creds,
        options: CallOpts,
    ) -> Response:
        """Send a message to one pool and wait for its result (see the flow call)."""
        flow, target = registry.pool(pool)
        await call_guard(creds, flow)
        return await invoke(target, request, options)

    @app.post("/v1/pools/{pool}/cast", status_code=202, tags=["call"])
    async def cast_pool(pool: str, request: Request, creds: Creds) -> dict[str, str]:
        """Send a message to one pool without waiting."""
        flow, target = registry.pool(pool)
        await call_guard(creds, flow)
        message, _ = await read_message(request)
        target.cast(message)
        return {"status": "accepted"}

    @app.get("/v1/results/{ref}", tags=["call"])
    async def result(ref: str, creds: Creds) -> JSONResponse:
        """The outcome of an ``?async=1`` call: pending, done or error."""
        pool_name, sep, _ = ref.rpartition("-")
        try:
            flow, pool = registry.pool(pool_name) if sep else (None, None)
        except NotFound:
            flow, pool = None, None
        if pool is None or flow is None:
            raise NotFound(f"no result {ref!r} (unknown or expired)")
        await call_guard(creds, flow)
        outcome = pool.results.get(ref)
        if outcome is None:
            raise NotFound(f"no result {ref!r} (unknown or expired)")
        finished, value, error = outcome
        if not finished:
            return JSONResponse({"ref": ref, "status": "pending"}, status_code=202)
        if error is not None:
            return JSONResponse({"ref": ref, "status": "error", "error": error})
        return JSONResponse({"ref": ref, "status": "done", "result": value})

    @app.get("/v1/pools/{pool}/events", tags=["call"])
    async def events(
        pool: str,
        creds: Creds,
        filter: Annotated[str | None, Query(max_length=4096)] = None,
    ) -> StreamingResponse:
        """Stream the pool's output lines as Server-Sent Events (``data: LINE``)."""
        flow, target = registry.pool(pool)
        await call_guard(creds, flow)
        try:
            match = compile_filter(filter)
        except Exception as exc:  # a bad re: filter
            raise ProtocolError(f"filter {filter!r}: {exc}") from None
        queue: asyncio.Queue[str] = asyncio.Queue(_EVENT_BUFFER)
        dropped = [0]

        def listener(line: str) -> None:
            if match is None or match(line):
                try:
                    queue.put_nowait(line)
                except asyncio.QueueFull:
                    dropped[0] += 1

        target.add_listener(listener)

        async def stream() -> AsyncIterator[str]:
            try:
                yield ": connected\n\n"
                while True:
                    try:
                        line = await asyncio.wait_for(queue.get(), 15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if dropped[0]:
                        yield f": {dropped[0]} lines dropped (slow client)\n\n"
                        dropped[0] = 0
                    yield f"data: {line}\n\n"
            finally:
                target.remove_listener(listener)

        return StreamingResponse(stream(), media_type="text/event-stream")

    # -- flows ------------------------------------------------------------------

    def flow_info(inst: Any) -> dict[str, Any]:
        spec = inst.loaded.spec
        pools = inst.flow.pools if inst.flow is not None else {}
        return {
            "name": inst.name,
            "state": inst.state,
            "desired": inst.desired,
            "public": spec.public,
            "entry": spec.entry_pool,
            "base_dir": inst.base_dir,
            "error": inst.error,
            "scenarios": sorted({"start", "stop", *spec.scenarios}),
            "pools": [
                pool_info(flow_name=inst.name, pool=pools[p.name])
                if p.name in pools
                else {"pool": p.name, "flow": inst.name, "state": "stopped"}
                for p in spec.func
            ],
        }

    def pool_info(flow_name: str, pool: Pool) -> dict[str, Any]:
        return {"flow": flow_name, **dataclasses.asdict(pool.snapshot())}

    @app.post(
        "/v1/flows",
        status_code=201,
        tags=["flows"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"text/plain": {"schema": {"type": "string", "maxLength": _MAX_FLOW}}},
            }
        },
    )
    async def install_flow(
        request: Request,
        creds: Creds,
        base_dir: Annotated[str | None, Query(max_length=4096)] = None,
        replace: bool = False,
        start: bool = False,
        source: Annotated[str, Query(max_length=256, pattern=r"^[^\x00-\x1f]*$")] = "body",
    ) -> dict[str, Any]:
        """Install a flow from its YAML (the body, at most 1 MiB); ``base_dir`` is
        the folder its functions run in (default: the node's data dir); ``source``
        names the file in error messages."""
        await need(creds, Role.OPERATOR)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > _MAX_FLOW:
                raise TooLarge(f"a flow file is at most {_MAX_FLOW} bytes")
        try:
            yaml_text = raw.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"the flow is not UTF-8 (byte {exc.start})") from None
        folder = base_dir or str(Path(node.info()["data_dir"]))
        if not Path(folder).is_dir():
            raise NotFound(f"base_dir {folder!r} is not a folder on node {node.name}")
        inst = await registry.install(yaml_text, folder, replace=replace, source=source)
        if start:
            inst = await registry.start(inst.name)
        return flow_info(inst)

    @app.get("/v1/flows", tags=["flows"])
    async def list_flows(creds: Creds) -> list[dict[str, Any]]:
        """Every installed flow with its state."""
        await need(creds, Role.OPERATOR)
        return [flow_info(registry.get(n)) for n in registry.names()]

    @app.get("/v1/flows/{flow}", tags=["flows"])
    async def get_flow(flow: str, creds: Creds) -> dict[str, Any]:
        """One flow: state, pools with their counters, scenarios."""
        await need(creds, Role.OPERATOR, flow)
        return flow_info(registry.get(flow))

    @app.get("/v1/flows/{flow}/yaml", response_class=PlainTextResponse, tags=["flows"])
    async def get_flow_yaml(flow: str, creds: Creds) -> str:
        """The flow's YAML as installed."""
        await need(creds, Role.OPERATOR, flow)
        return str(registry.get(flow).text)

    @app.post("/v1/flows/{flow}/start", tags=["flows"])
    async def start_flow(flow: str, creds: Creds) -> dict[str, Any]:
        """Start a flow; it stays running across node restarts."""
        await need(creds, Role.OPERATOR, flow)
        return flow_info(await registry.start(flow))

    @app.post("/v1/flows/{flow}/stop", tags=["flows"])
    async def stop_flow(flow: str, creds: Creds) -> dict[str, Any]:
        """Stop a flow; it stays stopped across node restarts."""
        await need(creds, Role.OPERATOR, flow)
        return flow_info(await registry.stop(flow))

    @app.delete("/v1/flows/{flow}", tags=["flows"])
    async def remove_flow(flow: str, creds: Creds) -> dict[str, str]:
        """Stop and forget a flow."""
        await need(creds, Role.OPERATOR, flow)
        await registry.remove(flow)
        return {"removed": flow}

    @app.post("/v1/flows/{flow}/scenarios/{scenario}", tags=["flows"])
    async def run_scenario(flow: str, scenario: str, creds: Creds) -> dict[str, Any]:
        """Run a named scenario of a running flow; returns its call results."""
        await need(creds, Role.OPERATOR, flow)
        inst = registry.get(flow)
        if inst.flow is None:
            raise PoolStopped(f"flow {flow} is {inst.state}; start it first")
        try:
            inst.flow.scenario(scenario)
        except DropError:
            raise NotFound(f"flow {flow} has no scenario {scenario!r}") from None
        return {
            "flow": flow,
            "scenario": scenario,
            "results": await inst.flow.run_scenario(scenario),
        }

    # -- pools ------------------------------------------------------------------

    @app.get("/v1/pools", tags=["pools"])
    async def list_pools(creds: Creds) -> list[dict[str, Any]]:
        """Every running pool with its counters."""
        await need(creds, Role.OPERATOR)
        return [pool_info(f, p) for _, (f, p) in sorted(registry.pools().items())]

    @app.get("/v1/pools/{pool}", tags=["pools"])
    async def get_pool(pool: str, creds: Creds) -> dict[str, Any]:
        """One pool: state, workers, counters, latency, recent errors."""
        flow, target = registry.pool(pool)
        await need(creds, Role.OPERATOR, flow)
        info = pool_info(flow, target)
        info["recent_errors"] = list(target.recent_errors)[-10:]
        info["worker_pids"] = [w.pid for w in target.workers()]
        return info

    @app.post("/v1/pools/{pool}/scale", tags=["pools"])
    async def scale_pool(pool: str, body: ScaleBody, creds: Creds) -> dict[str, Any]:
        """Set a pool's size."""
        flow, target = registry.pool(pool)
        await need(creds, Role.OPERATOR, flow)
        await target.scale(body.size)
        return pool_info(flow, target)

    @app.get("/v1/pools/{pool}/logs", response_class=PlainTextResponse, tags=["pools"])
    async def pool_logs(
        pool: str, creds: Creds, lines: Annotated[int, Query(ge=1, le=10000)] = 100
    ) -> str:
        """The last lines of the pool's stderr log."""
        flow, target = registry.pool(pool)
        await need(creds, Role.OPERATOR, flow)
        path = target.log.path
        if path is None or not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 256 * lines))
            tail = f.read().decode("utf-8", "backslashreplace").splitlines()
        return "".join(line + "\n" for line in tail[-lines:])

    # -- node, auth, health, metrics -----------------------------------------------

    @app.get("/v1/node", tags=["node"])
    async def node_info(creds: Creds) -> dict[str, Any]:
        """Who this node is: name, version, uptime, addresses."""
        await need(creds, Role.OPERATOR)
        return node.info()

    @app.get("/v1/node/stats", tags=["node"])
    async def node_stats(creds: Creds) -> dict[str, Any]:
        """CPU, memory, load and every pool's counters."""
        await need(creds, Role.OPERATOR)
        return node.stats()

    @app.post("/v1/auth/login", tags=["auth"])
    async def login(body: LoginBody) -> dict[str, Any]:
        """Exchange a secret for a bearer token with an expiry."""
        try:
            issued = await node.auth.login(body.secret, body.ttl)
        except AuthError as exc:
            raise Unauthorized(str(exc)) from None
        return {
            "token": issued.token,
            "id": issued.id,
            "user": issued.user,
            "role": str(issued.role),
            "expires": issued.expires,
        }

    @app.get("/v1/auth/tokens", tags=["auth"])
    async def tokens(creds: Creds) -> list[dict[str, Any]]:
        """Live tokens (never their secret part)."""
        await need(creds, Role.ADMIN)
        return await node.auth.list_tokens()

    @app.delete("/v1/auth/tokens/{token_id}", tags=["auth"])
    async def revoke(token_id: str, creds: Creds) -> dict[str, Any]:
        """Revoke a token at once."""
        await need(creds, Role.ADMIN)
        if not await node.auth.revoke(token_id):
            raise NotFound(f"no token {token_id!r}")
        return {"revoked": token_id}

    @app.post("/v1/auth/users", status_code=201, tags=["auth"])
    async def add_user(body: UserBody, creds: Creds) -> dict[str, Any]:
        """Create a user; the answer holds its secret, shown this once."""
        await need(creds, Role.ADMIN)
        try:
            secret = await node.auth.add_user(body.name, body.role, body.flows)
        except ValueError as exc:  # flows given to a role they do not limit
            raise ProtocolError(str(exc)) from None
        return {"user": body.name, "role": str(body.role), "flows": body.flows, "secret": secret}

    @app.get("/healthz", tags=["node"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["node"])
    async def readyz() -> JSONResponse:
        """The node has its state and has restored its flows."""
        if node.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting"}, status_code=503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["node"])
    async def metrics(creds: Creds) -> Response:
        """Prometheus text format: per-pool counters, queue depth, latency, node CPU/memory."""
        await need(creds, Role.OPERATOR)
        body, content_type = metrics_text(node.name, registry.pools())
        return Response(body, media_type=content_type)

    return app

"""The commands that talk to a node over HTTP: login, flow, call, cast, pool, node, events.

Exit statuses: 0 done; 1 the node refused or the work failed; 2 bad
arguments; 3 no node answers; 4 not logged in, or the token is too weak.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from drop.api.client import DEFAULT_URL, ApiError, Client, Unreachable, save_token

RET_OK = 0
RET_FAILED = 1
RET_USAGE = 2
RET_UNREACHABLE = 3
RET_AUTH = 4

flow_app = typer.Typer(help="Install and manage flows on a node.", no_args_is_help=True)
pool_app = typer.Typer(help="Look at and scale running pools.", no_args_is_help=True)
node_app = typer.Typer(help="The node itself.", no_args_is_help=True)
token_app = typer.Typer(help="List and revoke tokens (admin).", no_args_is_help=True)
user_app = typer.Typer(help="Add users (admin).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the node's JSON answer.")]
_err = Console(stderr=True, soft_wrap=True)
# a pipe gets whole rows, not a table squeezed into 80 columns
_out = Console(width=None if sys.stdout.isatty() else 240)


def node_url(ctx: typer.Context) -> str:
    """``--node``, else ``DROP_NODE`` (when it is a URL), else the default."""
    obj = ctx.find_root().obj or {}
    return str(obj.get("node") or DEFAULT_URL)


@contextmanager
def _client(ctx: typer.Context) -> Iterator[Client]:
    client = Client(node_url(ctx))
    try:
        yield client
    except Unreachable as exc:
        _err.print(f"drop: {exc}; is `drop up` running? (--node URL or DROP_NODE)")
        raise typer.Exit(RET_UNREACHABLE) from None
    except ApiError as exc:
        hint = ""
        if exc.status == 401:
            hint = " (log in: drop login --secret-file FILE)"
        _err.print(f"drop: {exc.message} [HTTP {exc.status}]{hint}", markup=False)
        raise typer.Exit(RET_AUTH if exc.status in (401, 403) else RET_FAILED) from None
    finally:
        client.close()


def _print(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        render(data)


def _pools_table(pools: list[dict[str, Any]]) -> None:
    table = Table(
        "pool",
        "flow",
        "state",
        "workers",
        "ok",
        "error",
        "timeout",
        "running",
        "queued",
        "nomore",
        "restarts",
        "p50 ms",
        "p99 ms",
    )
    for p in pools:
        table.add_row(
            *(
                str(p.get(k, ""))
                for k in (
                    "pool",
                    "flow",
                    "state",
                    "workers",
                    "ok",
                    "error",
                    "timeout",
                    "running",
                    "queued",
                    "nomore",
                    "restarts",
                    "p50_ms",
                    "p99_ms",
                )
            )
        )
    _out.print(table)


def login(
    ctx: typer.Context,
    secret_file: Annotated[
        Path | None, typer.Option(help="File holding the secret (default: read stdin).")
    ] = None,
    ttl: Annotated[float | None, typer.Option(help="Token lifetime in seconds.")] = None,
) -> None:
    """Exchange a secret for a token and save it (0600) for later commands."""
    if secret_file is not None:
        try:
            secret = secret_file.read_text().strip()
        except OSError as exc:
            _err.print(f"drop login: cannot read {secret_file}: {exc.strerror}")
            raise typer.Exit(RET_USAGE) from None
    else:
        secret = sys.stdin.readline().strip()
    if not secret:
        _err.print("drop login: no secret given (--secret-file FILE, or on stdin)")
        raise typer.Exit(RET_USAGE)
    with _client(ctx) as client:
        answer = client.login(secret, ttl)
    path = save_token(client.url, answer["token"], answer["expires"])
    _err.print(f"logged in to {client.url} as {answer['user']} ({answer['role']}); token in {path}")


def call(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(help="The flow (or pool, with --pool).")],
    message: Annotated[
        str | None, typer.Argument(help="The message (default: stdin lines).")
    ] = None,
    pool: Annotated[bool, typer.Option("--pool", help="Call a pool, not a flow.")] = False,
) -> None:
    """Send a message and print the result. Without MESSAGE, each stdin line is
    a message and the results come back in order."""
    with _client(ctx) as client:
        if message is not None:
            sys.stdout.write(client.call(flow, message, pool=pool) + "\n")
            return
        text = sys.stdin.read()
        failed = 0
        for line in client.call(flow, text, pool=pool, batch=True).splitlines():
            outcome = json.loads(line)
            if "result" in outcome:
                sys.stdout.write(outcome["result"] + "\n")
            else:
                failed += 1
                _err.print(f"drop call: {outcome.get('message')}", markup=False)
        if failed:
            raise typer.Exit(RET_FAILED)


def cast(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument(help="The flow (or pool, with --pool).")],
    message: Annotated[str, typer.Argument(help="The message.")],
    pool: Annotated[bool, typer.Option("--pool", help="Cast to a pool, not a flow.")] = False,
) -> None:
    """Send a message without waiting for a result."""
    with _client(ctx) as client:
        client.cast(flow, message, pool=pool)


def events(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="The pool whose output to follow.")],
    filter: Annotated[str | None, typer.Option(help="no, label:NAME, re:REGEX or text.")] = None,
) -> None:
    """Print a pool's output lines as they happen (Ctrl-C to stop)."""
    params = {"filter": filter} if filter else {}
    with _client(ctx) as client, client.stream(f"/v1/pools/{pool}/events", **params) as lines:
        try:
            for line in lines:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


# -- flow --------------------------------------------------------------------------


@flow_app.command("install")
def flow_install(
    ctx: typer.Context,
    flow_file: Annotated[Path, typer.Argument(help="The flow's YAML file.")],
    start: Annotated[bool, typer.Option(help="Start it right away.")] = True,
    replace: Annotated[bool, typer.Option(help="Replace an installed flow of that name.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Install a flow; its functions run in the file's folder on the node."""
    try:
        text = flow_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _err.print(f"drop flow install: cannot read {flow_file}: {exc}")
        raise typer.Exit(RET_USAGE) from None
    with _client(ctx) as client:
        info = client.install(
            text,
            str(flow_file.resolve().parent),
            start=start,
            replace=replace,
            source=flow_file.name,
        )
    _print(info, as_json, lambda i: _out.print(f"flow {i['name']} installed, {i['state']}"))


def _flow_action(name: str, verb: str, method: str, path: str) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        flow: Annotated[str, typer.Argument(help="The flow.")],
        as_json: JsonOpt = False,
    ) -> None:
        with _client(ctx) as client:
            info = client.json(method, path.format(flow=flow))
        _print(info, as_json, lambda _: _out.print(f"flow {flow} {verb}"))

    command.__doc__ = f"{name.capitalize()} a flow."
    return command


flow_app.command("start")(_flow_action("start", "started", "POST", "/v1/flows/{flow}/start"))
flow_app.command("stop")(_flow_action("stop", "stopped", "POST", "/v1/flows/{flow}/stop"))
flow_app.command("remove")(_flow_action("remove", "removed", "DELETE", "/v1/flows/{flow}"))


@flow_app.command("list")
def flow_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Installed flows and their state."""
    with _client(ctx) as client:
        flows = client.json("GET", "/v1/flows")

    def render(items: list[dict[str, Any]]) -> None:
        table = Table("flow", "state", "desired", "pools", "entry", "public")
        for f in items:
            table.add_row(
                f["name"],
                f["state"],
                f["desired"],
                ", ".join(p["pool"] for p in f["pools"]),
                f["entry"],
                str(f["public"]),
            )
        _out.print(table)

    _print(flows, as_json, render)


@flow_app.command("info")
def flow_info(
    ctx: typer.Context, flow: Annotated[str, typer.Argument()], as_json: JsonOpt = False
) -> None:
    """One flow: state, pools with their counters, scenarios."""
    with _client(ctx) as client:
        info = client.json("GET", f"/v1/flows/{flow}")

    def render(i: dict[str, Any]) -> None:
        _out.print(
            f"flow {i['name']}: {i['state']} (desired {i['desired']}), entry {i['entry']}, "
            f"scenarios: {', '.join(i['scenarios'])}"
        )
        if i["error"]:
            _out.print(f"error: {i['error']}", markup=False)
        _pools_table(i["pools"])

    _print(info, as_json, render)


@flow_app.command("scenario")
def flow_scenario(
    ctx: typer.Context,
    flow: Annotated[str, typer.Argument()],
    scenario: Annotated[str, typer.Argument()],
    as_json: JsonOpt = False,
) -> None:
    """Run a named scenario of a running flow and print its call results."""
    with _client(ctx) as client:
        answer = client.json("POST", f"/v1/flows/{flow}/scenarios/{scenario}")
    _print(answer, as_json, lambda a: [sys.stdout.write(r + "\n") for r in a["results"]])


# -- pool ---------------------------------------------------------------------------


@pool_app.command("list")
def pool_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Running pools with their counters."""
    with _client(ctx) as client:
        pools = client.json("GET", "/v1/pools")
    _print(pools, as_json, _pools_table)


@pool_app.command("info")
def pool_info(
    ctx: typer.Context, pool: Annotated[str, typer.Argument()], as_json: JsonOpt = False
) -> None:
    """One pool: counters, workers, recent errors."""
    with _client(ctx) as client:
        info = client.json("GET", f"/v1/pools/{pool}")

    def render(i: dict[str, Any]) -> None:
        _pools_table([i])
        _out.print(f"worker pids: {i['worker_pids']}")
        if i["reason"]:
            _out.print(f"last restart decision: {i['reason']}", markup=False)
        for err in i["recent_errors"]:
            _out.print(f"  {err}", markup=False)

    _print(info, as_json, render)


@pool_app.command("scale")
def pool_scale(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument()],
    size: Annotated[int, typer.Argument(min=0)],
    as_json: JsonOpt = False,
) -> None:
    """Set a pool's number of workers."""
    with _client(ctx) as client:
        info = client.json("POST", f"/v1/pools/{pool}/scale", json={"size": size})
    _print(info, as_json, lambda i: _out.print(f"pool {pool}: {i['workers']} workers"))


@pool_app.command("logs")
def pool_logs(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument()],
    lines: Annotated[int, typer.Option("--lines", "-n", min=1, max=10000)] = 100,
) -> None:
    """The last lines the pool's workers wrote to stderr."""
    with _client(ctx) as client:
        sys.stdout.write(
            client.request("GET", f"/v1/pools/{pool}/logs", params={"lines": lines}).text
        )


# -- node ---------------------------------------------------------------------------


@node_app.command("info")
def node_info(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The node's name, version, uptime and addresses."""
    with _client(ctx) as client:
        info = client.json("GET", "/v1/node")
    _print(info, as_json, lambda i: [_out.print(f"{k}: {v}", markup=False) for k, v in i.items()])


@node_app.command("stats")
def node_stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """CPU, memory, load and every pool's counters."""
    with _client(ctx) as client:
        stats = client.json("GET", "/v1/node/stats")

    def render(s: dict[str, Any]) -> None:
        _out.print(
            f"node {s['node']}: cpu {s['cpu_percent']}% of {s['cpus']}, load {s['load']}, "
            f"memory {s['memory']['percent']}% used, process rss {s['process']['rss']}"
        )
        _pools_table([{"pool": k, **v} for k, v in s["pools"].items()])

    _print(stats, as_json, render)


# -- tokens and users ----------------------------------------------------------------


@token_app.command("list")
def token_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Live tokens: id, user, role, flows, expiry (never the secret part)."""
    with _client(ctx) as client:
        tokens = client.json("GET", "/v1/auth/tokens")

    def render(items: list[dict[str, Any]]) -> None:
        table = Table("id", "user", "role", "flows", "expires")
        for t in items:
            flows = ", ".join(t["flows"]) if t.get("flows") else "all"
            expires = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["expires"]))
            table.add_row(t["id"], t["user"], t["role"], flows, expires)
        _out.print(table)

    _print(tokens, as_json, render)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token at once."""
    with _client(ctx) as client:
        client.json("DELETE", f"/v1/auth/tokens/{token_id}")
    _err.print(f"token {token_id} revoked")


@user_app.command("add")
def user_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Letters, digits, _ and -.")],
    role: Annotated[str, typer.Option(help="admin, operator or invoker.")] = "invoker",
    flow: Annotated[
        list[str], typer.Option("--flow", help="Limit an invoker to this flow (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
) -> None:
    """Create a user and print its secret (shown this once) on stdout."""
    body: dict[str, Any] = {"name": name, "role": role, "flows": flow or None}
    with _client(ctx) as client:
        answer = client.json("POST", "/v1/auth/users", json=body)
    sys.stdout.write(answer["secret"] + "\n")
    _err.print(f"user {name} ({role}) created; log in with: drop login (secret on stdin)")

"""The ``drop`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from drop.errors import SpecError

app = typer.Typer(
    name="drop",
    help="DROP: run any stdin/stdout program as an elastic pool of workers, wired into flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
from drop.cli import _remote, _up  # noqa: E402 - the app above is theirs to extend

flow_app = _remote.flow_app
app.add_typer(flow_app, name="flow", help="Check, install and manage flows.")
app.add_typer(_remote.pool_app, name="pool")
app.add_typer(_remote.node_app, name="node")
app.add_typer(_remote.token_app, name="token")
app.add_typer(_remote.user_app, name="user")
app.command()(_up.up)
app.command()(_remote.login)
app.command()(_remote.call)
app.command()(_remote.cast)
app.command()(_remote.events)


@app.callback()
def _root(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option("--node", help="URL of the node (default $DROP_NODE or 127.0.0.1:8081)."),
    ] = None,
) -> None:
    if node is None:
        env = os.environ.get("DROP_NODE", "")
        # inside a worker DROP_NODE is the node's name, not a URL
        node = env if "://" in env else None
    ctx.obj = {"node": node}


def run_data_dir() -> Path:
    """Where ``drop run`` keeps worker logs: ``$DROP_DATA_DIR``, else the node's default."""
    from drop.node import default_data_dir

    env = os.environ.get("DROP_DATA_DIR")
    return Path(env) if env else default_data_dir()


def _parse_sets(sets: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in sets:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise typer.BadParameter(f"--set {item!r}: write name=value", param_hint="--set")
        out[name.strip()] = value
    return out


@app.command(
    epilog=(
        "Examples:\n\n"
        "  drop run examples/sshguard/flow.yaml --input examples/data/OpenSSH_2k.log\n\n"
        "  drop run examples/sshguard/flow.yaml --input auth.log --set threshold=10\n\n"
        "  printf 'hello\\n' | drop run examples/pyex/pyex.yaml --input -\n\n"
        "Exit status: 0 all input processed; 1 a message or pool failed (summary on stderr); "
        "2 bad flow file or arguments."
    )
)
def run(
    flow_file: Annotated[Path, typer.Argument(help="The flow's YAML file.")],
    input: Annotated[
        str, typer.Option("--input", "-i", help="Input file, one message per line; - for stdin.")
    ] = "-",
    set_: Annotated[
        list[str], typer.Option("--set", help="Give a flow var a value: name=value (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    data_dir: Annotated[
        Path | None, typer.Option(help="Where worker logs go (default $DROP_DATA_DIR).")
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar on stderr (default: when it is a terminal).")
    ] = None,
) -> None:
    """Run a flow in this process over input lines and print its output."""
    from drop.cli._logging import setup_logging
    from drop.cli._run import RET_USAGE, run_flow

    setup_logging()

    show = sys.stderr.isatty() if progress is None else progress
    try:
        code = run_flow(flow_file, input, _parse_sets(set_), data_dir or run_data_dir(), show)
    except SpecError as exc:
        typer.echo(f"drop run: invalid flow:\n{exc}", err=True)
        raise typer.Exit(RET_USAGE) from None
    except OSError as exc:
        typer.echo(f"drop run: cannot read input {input!r}: {exc.strerror or exc}", err=True)
        raise typer.Exit(RET_USAGE) from None
    raise typer.Exit(code)


@flow_app.command("validate")
def validate(
    flow_file: Annotated[Path, typer.Argument(help="The flow's YAML file.")],
    set_: Annotated[list[str], typer.Option("--set", help="name=value for a flow var.")] = [],  # noqa: B006
) -> None:
    """Check a flow file and list every problem with its line (exit 2 if any)."""
    from drop.flow import load_flow

    try:
        loaded = load_flow(flow_file, _parse_sets(set_))
    except SpecError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    spec = loaded.spec
    typer.echo(
        f"{flow_file}: ok: flow {spec.name}, pools {', '.join(p.name for p in spec.func)}, "
        f"entry {spec.entry_pool}, output {', '.join(spec.output_pools)}"
    )


def main() -> None:
    """Entry point of the ``drop`` script."""
    app()

"""``drop up``: run a node in the foreground."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from drop.errors import DropError, SpecError

RET_OK = 0
RET_FAILED = 1
RET_USAGE = 2


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def up(
    data_dir: Annotated[Path | None, typer.Option(help="Node state, logs, secrets.")] = None,
    http: Annotated[str | None, typer.Option(help="HOST:PORT of the API (127.0.0.1:8081).")] = None,
    nats: Annotated[str | None, typer.Option(help="Use this NATS URL, no embedded server.")] = None,
    nats_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT of the embedded nats-server (port 0: free).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="The node's name (default: hostname).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    insecure_bind: Annotated[
        bool | None, typer.Option("--insecure-bind", help="Allow a non-loopback bind without TLS.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="A YAML file of the same settings.")] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the settings in force and exit.")
    ] = False,
) -> None:
    """Run a node: embedded NATS, installed flows, the HTTP API. Settings come
    from flags, then DROP_* variables, then --config, then defaults."""
    import uvloop  # the node's imports are heavy: only `drop up` pays for them

    from drop.cli._logging import setup_logging
    from drop.node import Node, load_config

    flags = {
        "data_dir": data_dir,
        "http": http,
        "nats": nats,
        "nats_listen": nats_listen,
        "name": name,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "insecure_bind": insecure_bind,
    }
    try:
        cfg = load_config(config, flags=flags)
    except SpecError as exc:
        _say(f"drop up: {exc}")
        raise typer.Exit(RET_USAGE) from None
    if print_config:
        sys.stdout.write(json.dumps(cfg.public(), indent=2) + "\n")
        return
    problems = cfg.check()
    if problems:
        for problem in problems:
            _say(f"drop up: {problem}")
        raise typer.Exit(RET_USAGE)
    setup_logging(logging.INFO)
    try:
        uvloop.run(Node(cfg, announce=_say).run())
    except (DropError, OSError) as exc:
        _say(f"drop up: {exc}")
        raise typer.Exit(RET_FAILED) from None

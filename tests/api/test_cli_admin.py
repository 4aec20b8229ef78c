"""The admin CLI (user, token) against a live node, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.api.conftest import LiveNode

pytestmark = pytest.mark.asyncio(loop_scope="module")

DROP = str(Path(sys.executable).parent / "drop")


async def drop(live: LiveNode, creds: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    # a subprocess the node's loop keeps serving while it runs
    env = dict(os.environ, DROP_CREDENTIALS=str(creds), NO_PROXY="127.0.0.1")
    proc = await asyncio.create_subprocess_exec(
        DROP,
        "--node",
        live.url,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_an_admin_adds_a_user_who_logs_in_and_whose_token_is_revoked(
    live: LiveNode, tmp_path: Path
) -> None:
    admin_creds, user_creds = tmp_path / "admin.json", tmp_path / "user.json"
    admin_creds.write_text(json.dumps({live.url: {"token": live.admin, "expires": 4e9}}))
    # Given a user created by the admin, limited to flow demo
    rc, secret, _ = await drop(live, admin_creds, "user", "add", "cli-user", "--flow", "demo")
    assert rc == 0 and secret.startswith("cli-user.")
    # When it logs in with that secret on stdin, it may call demo
    rc, _, err = await drop(live, user_creds, "login", stdin=secret)
    assert rc == 0, err
    rc, out, _ = await drop(live, user_creds, "call", "demo", "hello")
    assert (rc, out) == (0, "hello\n")
    # And its token shows in the admin's list, and revoking it shuts it out
    rc, out, _ = await drop(live, admin_creds, "token", "list", "--json")
    ids = [t["id"] for t in json.loads(out) if t["user"] == "cli-user"]
    assert rc == 0 and len(ids) == 1
    assert (await drop(live, admin_creds, "token", "revoke", ids[0]))[0] == 0
    rc, _, err = await drop(live, user_creds, "call", "demo", "hello")
    assert rc == 4 and "invalid or expired token" in err

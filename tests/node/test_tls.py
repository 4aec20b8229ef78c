"""A node serving HTTPS with --tls-cert/--tls-key, reached over real TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from drop.node import Node, load_config


async def test_a_node_with_a_certificate_serves_its_api_over_https(tmp_path: Path) -> None:
    # Given a certificate for 127.0.0.1 from a test CA
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cfg = load_config(
        env={},
        flags={
            "data_dir": tmp_path / "data",
            "http": "127.0.0.1:0",
            "nats_listen": "127.0.0.1:0",
            "tls_cert": cert_file,
            "tls_key": key_file,
        },
    )
    assert cfg.check() == []
    node = Node(cfg, announce=lambda text: None)
    await node.start()
    try:
        assert cfg.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context()
        ca.configure_trust(trusted)
        secret = (tmp_path / "data" / "secrets" / "initial-admin").read_text().strip()
        # When a client that trusts the CA logs in and asks who the node is
        async with httpx.AsyncClient(base_url=cfg.url, verify=trusted, trust_env=False) as c:
            token = (await c.post("/v1/auth/login", json={"secret": secret})).json()["token"]
            info = await c.get("/v1/node", headers={"Authorization": f"Bearer {token}"})
        # Then it answers over TLS
        assert info.status_code == 200
        assert info.json()["url"] == cfg.url
        # And a client that does not trust the certificate is refused by TLS itself
        async with httpx.AsyncClient(base_url=cfg.url, trust_env=False) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/healthz")
    finally:
        await node.stop()

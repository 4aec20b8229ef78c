"""A node's settings: defaults, then a config file, then ``DROP_*`` variables,
then command-line flags, each overriding the one before."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from drop.errors import SpecError

#: Where ``drop up`` looks for a config file when none is given.
DEFAULT_CONFIG = Path.home() / ".config" / "drop" / "node.yaml"


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/drop``, else ``~/.local/share/drop``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "drop"


@dataclass(slots=True)
class NodeConfig:
    """Everything ``drop up`` needs. ``sources`` says where each value came from."""

    data_dir: Path = field(default_factory=default_data_dir)
    http: str = "127.0.0.1:8081"
    nats: str | None = None
    nats_listen: str = "127.0.0.1:0"
    name: str = field(default_factory=socket.gethostname)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure_bind: bool = False
    token_ttl: float = 12 * 3600.0
    max_body: int = 16 * 1024 * 1024
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def http_host(self) -> str:
        return split_hostport(self.http, "http")[0]

    @property
    def http_port(self) -> int:
        return split_hostport(self.http, "http")[1]

    @property
    def url(self) -> str:
        """How a client on this machine reaches the API."""
        host = self.http_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{host}:{self.http_port}"

    def check(self) -> list[str]:
        """Every problem with the settings (empty when they are usable)."""
        problems = []
        for key in ("http", "nats_listen"):
            try:
                split_hostport(getattr(self, key), key)
            except SpecError as exc:
                problems.append(str(exc))
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("tls_cert and tls_key go together: give both or neither")
        exposed = not problems and not self.tls_cert and not is_loopback(self.http_host)
        if exposed and not self.insecure_bind:
            problems.append(
                f"http {self.http}: binding a non-loopback address without TLS exposes "
                "tokens in clear; give --tls-cert/--tls-key, or --insecure-bind if you mean it"
            )
        return problems

    def public(self) -> dict[str, Any]:
        """The settings for display (``--print-config``): no secrets, with sources."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            out[f.name] = {
                "value": str(value) if isinstance(value, Path) else value,
                "from": self.sources.get(f.name, "default"),
            }
        return out


def split_hostport(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:80`` for IPv6) into its parts.

    Raises:
        SpecError: naming the setting and the expected form.
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SpecError(f"{what} {text!r}: write HOST:PORT, e.g. 127.0.0.1:8081")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for loopback addresses and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_TYPES = {f.name: f.type for f in fields(NodeConfig)}


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = str(_TYPES[key])
    try:
        if "Path" in kind:
            return None if value in (None, "") else Path(str(value)).expanduser()
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError("expected true or false")
            return text in ("1", "true", "yes", "on")
        if "float" in kind:
            return float(value)
        if "int" in kind:
            return int(value)
        return None if value is None else str(value)
    except ValueError as exc:
        raise SpecError(f"{where}: {key}: {exc}") from None


def load_config(
    config_file: Path | None = None,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
) -> NodeConfig:
    """Build a ``NodeConfig``: defaults < file < ``DROP_*`` env < flags.

    Args:
        config_file: a YAML mapping of the same keys; default
            ``$DROP_CONFIG`` or ``~/.config/drop/node.yaml`` if present.
        env: the environment (default ``os.environ``).
        flags: values given on the command line (``None`` values are ignored).

    Raises:
        SpecError: an unknown key or a bad value, naming where it came from.
    """
    env = dict(os.environ if env is None else env)
    cfg = NodeConfig()
    path = config_file or (Path(env["DROP_CONFIG"]) if env.get("DROP_CONFIG") else None)
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"{path}: cannot read the config file: {exc}") from None
        if not isinstance(data, dict):
            raise SpecError(f"{path}: the config file must be a mapping of settings")
        layers.append((str(path), {k.replace("-", "_"): v for k, v in data.items()}))
    prefix = "DROP_"
    layers.append(
        (
            "env",
            {
                k[len(prefix) :].lower(): v
                for k, v in env.items()
                if k.startswith(prefix) and k[len(prefix) :].lower() in _TYPES
            },
        )
    )
    layers.append(("flag", {k: v for k, v in (flags or {}).items() if v is not None}))
    for where, values in layers:
        for key, value in values.items():
            if key not in _TYPES or key == "sources":
                known = ", ".join(k for k in _TYPES if k != "sources")
                raise SpecError(f"{where}: unknown setting {key!r} (settings: {known})")
            setattr(cfg, key, _coerce(key, value, where))
            cfg.sources[key] = where
    return cfg

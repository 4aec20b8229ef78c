"""The flow file, as typed models.

A flow declares pools (``func``), their subscriptions (``sub``) and named
scenarios. The original DROP short form loads unchanged::

    name: pyex
    func:
      - name: pyex
        image: pyex:0.1.0
        cmd: /usr/bin/python pyex.py 1
        sub:
          - {name: other_pool, filter: "tag:matched", type: one}

The loader (``_loader.py``) hands these models plain strings for every YAML
scalar, so YAML 1.1 never turns ``no`` into ``False`` or ``010`` into ``8``;
pydantic converts strings to numbers and booleans only where a field asks.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drop.flow._units import parse_duration, parse_size
from drop.function import DEFAULT_MAX_LINE, Mode
from drop.pool import Restart, Strategy

_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


def _seconds(value: object) -> float:
    return parse_duration(value, bare="s")


def _millis(value: object) -> float:
    return parse_duration(value, bare="ms")


def _no_filter(value: object) -> object:
    # The original wrote `filter: no` for "everything"; any spelling of it counts.
    if value is None or value is False:
        return None
    if isinstance(value, str) and value.strip().lower() in ("", "no"):
        return None
    return value


#: Seconds; a bare number is seconds.
Seconds = Annotated[float, BeforeValidator(_seconds)]
#: Seconds; a bare number is milliseconds (the original ``timeout``).
Millis = Annotated[float, BeforeValidator(_millis)]
#: Bytes; ``64KiB`` and friends accepted.
Bytes = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]

#: The original subscription types and what they mean on one machine.
SUB_TYPES = ("one", "all", "done", "dall", "sone")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Size(_Model):
    """How many workers: ``size: 4`` is fixed, ``size: {min: 1, max: 8}`` elastic."""

    min: int = Field(1, ge=0)
    max: int = Field(1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, int | str) and not isinstance(value, bool):
            try:
                n = int(value)
            except ValueError:
                raise ValueError(
                    f"invalid size {value!r}: write a number (size: 4) "
                    "or a range (size: {min: 1, max: 8})"
                ) from None
            return {"min": n, "max": max(n, 1)}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Size:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self


class Cache(_Model):
    """Cache results by message: ``cache: {ttl: 60s, size: 1000}`` (or ``cache: 60s``)."""

    ttl: Seconds
    size: int = Field(10_000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"ttl": value} if isinstance(value, str | int | float) else value


class Sub(_Model):
    """A subscription: this pool receives ``name``'s output lines that pass ``filter``.

    ``filter``: ``no``/empty = everything; ``label:NAME`` = lines ``tag:NAME,...``;
    ``re:REGEX`` = lines the regex finds; anything else = lines containing it.
    ``type``: ``one`` (one worker gets each line) or ``all`` (every worker);
    the original ``done``/``sone`` act as ``one`` and ``dall`` as ``all`` on one node.
    """

    name: str = Field(pattern=_NAME)
    filter: Annotated[str | None, BeforeValidator(_no_filter)] = None
    type: Literal["one", "all", "done", "dall", "sone"] = "one"

    @field_validator("filter")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("re:"):
            try:
                re.compile(value[3:])
            except re.error as exc:
                raise ValueError(f"invalid regex {value[3:]!r}: {exc}") from None
        return value

    @property
    def to_all(self) -> bool:
        """True when every worker of the subscriber gets each line."""
        return self.type in ("all", "dall")


class PoolSpec(_Model):
    """One pool of the flow (an item of ``func``)."""

    name: str = Field(pattern=_NAME)
    cmd: str | list[str]
    image: str | None = None
    shell: bool = False
    dir: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    mode: Mode = Mode.SYNC
    size: Size = Field(default_factory=Size)
    strategy: Strategy = Strategy.FREE
    key: str | None = None
    concurrency: int = Field(16, ge=1)
    pipeline: int = Field(1, ge=1, le=1024)
    timeout: Millis | None = 10.0
    memory: int | None = Field(None, ge=1)
    max_line: Bytes = DEFAULT_MAX_LINE
    queue: int = Field(10_000, ge=1)
    idle_timeout: Seconds = 30.0
    stop_timeout: Seconds = 5.0
    restart: Restart | None = None
    max_restarts: int = Field(5, ge=0)
    window: Seconds = 30.0
    backoff: Seconds = 0.1
    backoff_max: Seconds = 5.0
    cache: Cache | None = None
    retention: Seconds = 300.0
    sub: list[Sub] = Field(default_factory=list)

    @field_validator("cmd")
    @classmethod
    def _cmd_not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not (value.strip() if isinstance(value, str) else value):
            raise ValueError("cmd is empty: name the program to run")
        return value

    @field_validator("key")
    @classmethod
    def _key_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _no_timeout(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("none", "never", "0"):
            return None
        return value

    @field_validator("strategy")
    @classmethod
    def _hash_is_fixed(cls, value: Strategy, info: ValidationInfo) -> Strategy:
        size = info.data.get("size")
        if value is Strategy.HASH and isinstance(size, Size) and size.min != size.max:
            raise ValueError(
                "strategy hash needs a fixed size (size: N) so that a key always reaches "
                "the same worker"
            )
        return value


#: The kinds of scenario step.
STEP_KINDS = (
    "start_pool",
    "stop_pool",
    "subscribe",
    "unsubscribe",
    "call",
    "cast",
    "scale",
    "wait_idle",
)


class Step(_Model):
    """One step of a scenario, written as a one-key mapping::

    - start_pool: parse
    - subscribe: {pool: count, to: parse, filter: "label:fail", type: one}
    - call: {pool: count, message: report, all: true}
    - cast: {pool: parse, message: hello}
    - scale: {pool: parse, size: 4}
    - wait_idle: [parse, count]      # or null for every pool
    - stop_pool: parse
    """

    kind: Literal[
        "start_pool", "stop_pool", "subscribe", "unsubscribe", "call", "cast", "scale", "wait_idle"
    ]
    pool: str | None = None
    pools: list[str] | None = None
    to: str | None = None
    message: str | None = None
    filter: Annotated[str | None, BeforeValidator(_no_filter)] = None
    type: Literal["one", "all", "done", "dall", "sone"] = "one"
    all: bool = False
    size: int | None = Field(None, ge=0)
    timeout: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:
            if len(value) != 1:
                raise ValueError(
                    f"a step is a mapping with one key (one of {', '.join(STEP_KINDS)}); "
                    f"got {sorted(value)}"
                )
            ((kind, arg),) = value.items()
            if kind not in STEP_KINDS:
                raise ValueError(f"unknown step {kind!r}: use one of {', '.join(STEP_KINDS)}")
            if arg is None:
                return {"kind": kind}
            if isinstance(arg, str):
                return {"kind": kind, "pool": arg}
            if isinstance(arg, list):
                return {"kind": kind, "pools": arg}
            if isinstance(arg, dict):
                return {"kind": kind, **arg}
            raise ValueError(f"step {kind}: expected a pool name or a mapping, got {arg!r}")
        return value

    @model_validator(mode="after")
    def _needs(self) -> Step:
        need_pool = self.kind not in ("wait_idle",)
        if need_pool and not self.pool:
            raise ValueError(f"step {self.kind} needs a pool")
        if self.kind in ("subscribe", "unsubscribe") and not self.to:
            raise ValueError(f"step {self.kind} needs `to`: the pool whose output is wanted")
        if self.kind in ("call", "cast") and self.message is None:
            raise ValueError(f"step {self.kind} needs a message")
        if self.kind == "scale" and self.size is None:
            raise ValueError("step scale needs a size")
        return self

    def pools_named(self) -> list[str]:
        """Every pool name the step refers to."""
        names = [n for n in (self.pool, self.to) if n]
        return names + list(self.pools or [])


class FlowSpec(_Model):
    """A whole flow file."""

    name: str = Field(pattern=_NAME)
    priority: str | None = None
    public: bool = False
    vars: dict[str, str] = Field(default_factory=dict)
    entry: str | None = None
    output: list[str] | None = None
    func: list[PoolSpec] = Field(min_length=1)
    scenarios: dict[str, list[Step]] = Field(default_factory=dict)

    def pool(self, name: str) -> PoolSpec:
        """The pool called ``name``."""
        for spec in self.func:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def entry_pool(self) -> str:
        """Where input goes: ``entry``, else the first pool."""
        return self.entry or self.func[0].name

    def subscribers_of(self, name: str) -> list[str]:
        """Pools that subscribe to ``name``'s output (itself excluded)."""
        return [p.name for p in self.func if p.name != name and any(s.name == name for s in p.sub)]

    @property
    def output_pools(self) -> list[str]:
        """Pools whose output a batch run prints: ``output``, else the terminal ones."""
        if self.output is not None:
            return list(self.output)
        return [p.name for p in self.func if not self.subscribers_of(p.name)]

"""Reading a flow file: YAML → plain data with line numbers → ``FlowSpec``.

Every problem is collected, not just the first, and each names the file, the
line and the field: ``sshguard.yaml:14: func[1] (count).size: max (1) must be
>= min (2)``.

Scalars stay strings. PyYAML follows YAML 1.1, where ``no`` is ``False``,
``010`` is 8 and ``22:30`` is 1350; a label filter must stay the text the
user wrote, so the loader builds values from the composed node tree itself
and lets each field convert its own string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from drop.errors import SpecError
from drop.flow._spec import FlowSpec

_Path = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NULL_TAG = "tag:yaml.org,2002:null"
#: Values a flow file may expand to, aliases included.
_MAX_NODES = 100_000


@dataclass(frozen=True, slots=True)
class LoadedFlow:
    """A validated flow and where it came from.

    Attributes:
        spec: the flow.
        source: the file name used in messages.
        base_dir: the folder pools run in unless they set ``dir``.
    """

    spec: FlowSpec
    source: str
    base_dir: Path


def load_flow(path: str | Path, overrides: dict[str, str] | None = None) -> LoadedFlow:
    """Load and validate a flow file.

    Args:
        path: the YAML file.
        overrides: values for the flow's ``vars`` (``--set name=value``).

    Raises:
        SpecError: with every problem found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the flow file: {exc}") from None
    return load_flow_text(
        text, source=str(path), base_dir=path.resolve().parent, overrides=overrides
    )


def load_flow_text(
    text: str,
    *,
    source: str = "<flow>",
    base_dir: Path | None = None,
    overrides: dict[str, str] | None = None,
) -> LoadedFlow:
    """Load and validate a flow from YAML text (see ``load_flow``)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise SpecError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: YAML error: {exc}") from None
    except RecursionError:
        raise SpecError(f"{source}: the YAML nests too deep") from None
    if node is None:
        raise SpecError(f"{source}: the file is empty; a flow needs `name` and `func`")
    lines: dict[_Path, int] = {}
    problems: list[str] = []
    budget = [_MAX_NODES]
    try:
        data = _plain(node, (), lines, problems, source, budget)
    except RecursionError:
        raise SpecError(f"{source}: the YAML nests too deep, or an alias holds itself") from None
    except _TooBig:
        raise SpecError(
            f"{source}: the YAML expands to more than {_MAX_NODES} values "
            "(aliases repeating aliases?); a flow is far smaller"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1: a flow is a mapping with `name` and `func`")
    data = _apply_vars(data, overrides or {}, lines, problems, source)
    if problems:
        raise SpecError(problems)
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError([_describe(err, data, lines, source) for err in exc.errors()]) from None
    problems = check_flow(spec, lines, source)
    if problems:
        raise SpecError(problems)
    return LoadedFlow(spec, source, base_dir or Path.cwd())


class _TooBig(Exception):
    pass


def _plain(
    node: yaml.Node,
    path: _Path,
    lines: dict[_Path, int],
    problems: list[str],
    source: str,
    budget: list[int],
) -> Any:
    # Aliases are expanded as they are walked, so a few lines of anchors can
    # stand for billions of values: the budget stops that early.
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                problems.append(
                    f"{source}:{key_node.start_mark.line + 1}: {_show((*path, key))}: "
                    "duplicate key; the earlier value would be silently lost"
                )
                continue
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, (*path, key), lines, problems, source, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _plain(item, (*path, i), lines, problems, source, budget)
            for i, item in enumerate(node.value)
        ]
    if node.tag == _NULL_TAG and node.style is None:
        return None
    return node.value


def _apply_vars(
    data: dict[str, Any],
    overrides: dict[str, str],
    lines: dict[_Path, int],
    problems: list[str],
    source: str,
) -> dict[str, Any]:
    declared = data.get("vars") or {}
    if not isinstance(declared, dict):
        return data
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        problems.append(
            f"{source}: --set {', '.join(unknown)}: not a var of this flow (declared: {known})"
        )
    values = {k: "" if v is None else str(v) for k, v in declared.items()} | overrides
    if not values:
        return data

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            return _VAR.sub(lambda m: values.get(m.group(1), m.group(0)), value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    out = {k: (v if k == "vars" else sub(v)) for k, v in data.items()}
    out["vars"] = values
    return out


def _show(path: _Path, data: Any = None) -> str:
    text = ""
    node = data
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            if isinstance(node, list) and part < len(node):
                node = node[part]
                name = node.get("name") if isinstance(node, dict) else None
                if isinstance(name, str):
                    text += f" ({name})"
            else:
                node = None
        else:
            text += f".{part}" if text else part
            node = node.get(part) if isinstance(node, dict) else None
    return text or "(top)"


def _describe(err: Any, data: Any, lines: dict[_Path, int], source: str) -> str:
    # Keep the parts of pydantic's location that exist in the document; the
    # rest are its own markers (union members, validator names).
    path: _Path = ()
    node = data
    for part in err["loc"]:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
            path += (part,)
        elif (
            isinstance(part, str)
            and isinstance(node, dict)
            and err["type"]
            in (
                "missing",
                "extra_forbidden",
            )
        ):
            path += (part,)
            break
    line = _line_of(path, lines)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field; check its spelling (see docs/flows.md for the fields)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return f"{source}:{line}: {_show(path, data)}: {msg}"


def _line_of(path: _Path, lines: dict[_Path, int]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def check_flow(
    spec: FlowSpec, lines: dict[_Path, int] | None = None, source: str = "<flow>"
) -> list[str]:
    """Problems a single field cannot see: names that must exist or be unique.

    Returns:
        every problem as ``"file:line: path: message"``; empty when the flow is sound.
    """
    lines = lines or {}
    problems: list[str] = []
    names = [p.name for p in spec.func]

    def at(path: _Path, msg: str) -> None:
        problems.append(f"{source}:{_line_of(path, lines)}: {_show(path)}: {msg}")

    known = ", ".join(names)
    seen: set[str] = set()
    for i, pool in enumerate(spec.func):
        if pool.name in seen:
            at(("func", i, "name"), f"duplicate pool name {pool.name!r}")
        seen.add(pool.name)
        for j, sub in enumerate(pool.sub):
            if sub.name not in names:
                at(("func", i, "sub", j, "name"), f"unknown pool {sub.name!r} (pools: {known})")
    for key, value in (("entry", spec.entry), *(("output", n) for n in spec.output or [])):
        if value is not None and value not in names:
            at((key,), f"unknown pool {value!r} (pools: {known})")
    for scenario, steps in spec.scenarios.items():
        for k, step in enumerate(steps):
            for name in step.pools_named():
                if name not in names:
                    at(
                        ("scenarios", scenario, k),
                        f"{step.kind}: unknown pool {name!r} (pools: {known})",
                    )
    return problems

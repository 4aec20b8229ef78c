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
    problems = check_flow(data, lines, source)
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err, data, lines, source) for err in exc.errors()] + problems
    if problems:
        raise SpecError(sorted(problems, key=_problem_line))
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
    for at, part in enumerate(path):
        if isinstance(part, int):
            text += f"[{part}]"
            if isinstance(node, list) and part < len(node):
                node = node[part]
                name = node.get("name") if isinstance(node, dict) else None
                # a pool is easier to find by its name than by its index
                if isinstance(name, str) and path[at - 1] == "func":
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


def _problem_line(problem: str) -> int:
    # "file:LINE: ..." (the file name may hold colons; the line is the last number)
    head = problem.split(": ", 1)[0]
    digits = head.rpartition(":")[2]
    return int(digits) if digits.isdigit() else 0


def _line_of(path: _Path, lines: dict[_Path, int]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def check_flow(
    data: dict[str, Any], lines: dict[_Path, int] | None = None, source: str = "<flow>"
) -> list[str]:
    """Problems a single field cannot see: names that must exist or be unique.

    Works on the plain data of a flow file, so it also runs when some fields
    are invalid, and ``drop flow validate`` lists every problem at once.

    Returns:
        every problem as ``"file:line: path: message"``; empty when the flow is sound.
    """
    lines = lines or {}
    problems: list[str] = []
    pools = [p for p in _items(data.get("func")) if isinstance(p, dict)]
    names = [p["name"] for p in pools if isinstance(p.get("name"), str)]

    def at(path: _Path, msg: str) -> None:
        problems.append(f"{source}:{_line_of(path, lines)}: {_show(path, data)}: {msg}")

    known = ", ".join(dict.fromkeys(names))
    seen: set[str] = set()
    for i, pool in enumerate(_items(data.get("func"))):
        if not isinstance(pool, dict):
            continue
        name = pool.get("name")
        if isinstance(name, str) and name in seen:
            at(("func", i, "name"), f"duplicate pool name {name!r}")
        seen.add(str(name))
        for j, sub in enumerate(_items(pool.get("sub"))):
            target = sub.get("name") if isinstance(sub, dict) else None
            if isinstance(target, str) and target not in names:
                at(("func", i, "sub", j, "name"), f"unknown pool {target!r} (pools: {known})")
    outputs = [("output", n) for n in _items(data.get("output"))]
    for key, value in (("entry", data.get("entry")), *outputs):
        if isinstance(value, str) and value not in names:
            at((key,), f"unknown pool {value!r} (pools: {known})")
    scenarios = data.get("scenarios")
    for scenario, steps in scenarios.items() if isinstance(scenarios, dict) else []:
        for k, step in enumerate(_items(steps)):
            if not isinstance(step, dict) or len(step) != 1:
                continue
            ((kind, arg),) = step.items()
            for name in _step_pools(arg):
                if name not in names:
                    at(
                        ("scenarios", scenario, k),
                        f"{kind}: unknown pool {name!r} (pools: {known})",
                    )
    return problems


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _step_pools(arg: Any) -> list[str]:
    """The pool names a step's argument refers to (``name``, ``[names]``, or a mapping)."""
    if isinstance(arg, str):
        return [arg]
    if isinstance(arg, list):
        return [a for a in arg if isinstance(a, str)]
    if isinstance(arg, dict):
        named = [arg.get("pool"), arg.get("to"), *_items(arg.get("pools"))]
        return [n for n in named if isinstance(n, str)]
    return []

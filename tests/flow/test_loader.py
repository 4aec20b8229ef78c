"""Flow files: the original short form, YAML 1.1 traps, and errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from drop.errors import SpecError
from drop.flow import load_flow, load_flow_text, parse_duration, parse_size
from drop.function import Mode
from drop.pool import Strategy


def test_original_short_form_loads_as_is() -> None:
    loaded = load_flow_text(
        "name: pyex\n"
        "priority: 1\n"
        "func:\n"
        "  - name: pyex\n"
        "    image: pyex:0.1.0\n"
        "    cmd: /usr/bin/python pyex.py 1\n"
        "    memory: 128\n"
        "    timeout: 10000\n"
        "    sub:\n"
        "      - {name: pyex, filter: 'tag:matched', type: one}\n"
    )
    pool = loaded.spec.func[0]
    assert (pool.name, pool.image, pool.cmd, pool.memory) == (
        "pyex",
        "pyex:0.1.0",
        "/usr/bin/python pyex.py 1",
        128,
    )
    # a bare timeout counts milliseconds, as in the original
    assert pool.timeout == 10.0
    assert pool.sub[0].filter == "tag:matched"
    assert loaded.spec.priority == "1"


@pytest.mark.parametrize("written", ["no", "No", "NO", '"no"', "''", "~"])
def test_filter_no_means_no_filter_however_written(written: str) -> None:
    loaded = load_flow_text(
        "name: f\nfunc:\n  - name: a\n    cmd: cat\n"
        f"  - name: b\n    cmd: cat\n    sub:\n      - {{name: a, filter: {written}}}\n"
    )
    assert loaded.spec.func[1].sub[0].filter is None


@pytest.mark.parametrize(("written", "kept"), [("010", "010"), ("22:30", "22:30"), ("1e3", "1e3")])
def test_label_filters_keep_the_exact_text_written(written: str, kept: str) -> None:
    loaded = load_flow_text(
        "name: f\nfunc:\n  - name: a\n    cmd: cat\n"
        f"  - name: b\n    cmd: cat\n    sub:\n      - {{name: a, filter: {written}}}\n"
    )
    assert loaded.spec.func[1].sub[0].filter == kept


def test_extended_keys_are_typed() -> None:
    loaded = load_flow_text(
        "name: f\n"
        "func:\n"
        "  - name: a\n"
        "    cmd: [python3, w.py]\n"
        "    mode: async\n"
        "    size: {min: 2, max: 6}\n"
        "    strategy: round_robin\n"
        "    concurrency: 32\n"
        "    timeout: 1.5s\n"
        "    idle_timeout: 2m\n"
        "    max_line: 64KiB\n"
        "    cache: {ttl: 500ms, size: 10}\n"
        "    env: {DEBUG: 1}\n"
    )
    pool = loaded.spec.func[0]
    assert pool.mode is Mode.ASYNC
    assert (pool.size.min, pool.size.max) == (2, 6)
    assert pool.strategy is Strategy.ROUND_ROBIN
    assert pool.concurrency == 32
    assert pool.timeout == 1.5
    assert pool.idle_timeout == 120.0
    assert pool.max_line == 65536
    assert pool.cache is not None and (pool.cache.ttl, pool.cache.size) == (0.5, 10)
    assert pool.env == {"DEBUG": "1"}


def test_broken_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    # the seed's own example, whose `image` is indented like the list item
    path.write_text("name: pyex\nfunc:\n    - name: pyex\n    image: pyex:0.1.0\n")
    with pytest.raises(SpecError) as err:
        load_flow(path)
    assert str(err.value).startswith(f"{path}:4:")
    assert "YAML syntax error" in str(err.value)


def test_every_field_problem_is_reported_with_its_line() -> None:
    text = (
        "name: f\n"  # 1
        "func:\n"  # 2
        "  - name: a\n"  # 3
        "    cmd: cat\n"  # 4
        "    timeout: soon\n"  # 5
        "    size: {min: 3, max: 1}\n"  # 6
        "    colour: blue\n"  # 7
    )
    with pytest.raises(SpecError) as err:
        load_flow_text(text, source="f.yaml")
    problems = err.value.problems
    assert len(problems) == 3
    assert any(
        p.startswith("f.yaml:5: func[0] (a).timeout: invalid duration 'soon'") for p in problems
    )
    assert any(p.startswith("f.yaml:6: func[0] (a).size") and "max (1)" in p for p in problems)
    assert any(p.startswith("f.yaml:7: func[0] (a).colour: unknown field") for p in problems)


def test_unknown_pool_in_a_subscription_is_named_with_its_line() -> None:
    text = (
        "name: f\nfunc:\n  - name: a\n    cmd: cat\n"
        "    sub:\n      - name: ghost\n"  # line 6
    )
    with pytest.raises(SpecError) as err:
        load_flow_text(text, source="f.yaml")
    assert err.value.problems == [
        "f.yaml:6: func[0] (a).sub[0].name: unknown pool 'ghost' (pools: a)"
    ]


def test_duplicate_keys_and_pool_names_are_errors() -> None:
    text = "name: f\nfunc:\n  - name: a\n    cmd: cat\n    cmd: dog\n  - name: a\n    cmd: cat\n"
    with pytest.raises(SpecError) as err:
        load_flow_text(text, source="f.yaml")
    assert err.value.problems == [
        "f.yaml:5: func[0].cmd: duplicate key; the earlier value would be silently lost"
    ]


def test_hash_strategy_needs_a_fixed_size() -> None:
    text = (
        "name: f\nfunc:\n  - name: a\n    cmd: cat\n"
        "    strategy: hash\n    size: {min: 1, max: 3}\n"
    )
    with pytest.raises(SpecError, match="strategy hash needs a fixed size"):
        load_flow_text(text)


def test_scenario_steps_are_checked_against_the_pools() -> None:
    text = (
        "name: f\nfunc:\n  - name: a\n    cmd: cat\n"
        "scenarios:\n  finish:\n    - stop_pool: a\n    - call: {pool: b, message: hi}\n"
    )
    with pytest.raises(SpecError) as err:
        load_flow_text(text, source="f.yaml")
    assert err.value.problems == [
        "f.yaml:8: scenarios.finish[1]: call: unknown pool 'b' (pools: a)"
    ]


def test_vars_are_substituted_and_set_overrides_them() -> None:
    text = "name: f\nvars: {n: 5}\nfunc:\n  - name: a\n    cmd: rank ${n} ${HOME}\n"
    assert load_flow_text(text).spec.func[0].cmd == "rank 5 ${HOME}"
    assert load_flow_text(text, overrides={"n": "9"}).spec.func[0].cmd == "rank 9 ${HOME}"
    with pytest.raises(SpecError, match=r"--set m: not a var of this flow \(declared: n\)"):
        load_flow_text(text, overrides={"m": "1"})


def test_missing_file_and_empty_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the flow file"):
        load_flow(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SpecError, match="the file is empty"):
        load_flow(tmp_path / "empty.yaml")


@pytest.mark.parametrize(
    ("value", "bare", "seconds"),
    [
        ("500ms", "s", 0.5),
        ("2s", "s", 2.0),
        ("1m", "s", 60.0),
        ("1h", "s", 3600.0),
        (3, "s", 3.0),
        ("10000", "ms", 10.0),
        (250, "ms", 0.25),
        ("1.5s", "ms", 1.5),
    ],
)
def test_durations_accept_units_and_bare_numbers(value: object, bare: str, seconds: float) -> None:
    assert parse_duration(value, bare=bare) == pytest.approx(seconds)


def test_bad_durations_and_sizes_say_which_forms_work() -> None:
    with pytest.raises(ValueError, match=r"500ms, 2s, 1m"):
        parse_duration("fast")
    with pytest.raises(ValueError, match="64KiB"):
        parse_size("big")
    assert parse_size("1MiB") == 1024 * 1024


def test_yaml_that_expands_without_bound_is_refused_quickly() -> None:
    # Given the "billion laughs": each anchor repeats the one before ten times
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    text = "\n".join(lines) + "\nname: f\nfunc: [{name: a, cmd: cat}]\n"
    # Then loading stops at the budget instead of building 10**9 values
    with pytest.raises(SpecError, match="expands to more than 100000 values"):
        load_flow_text(text, source="bomb.yaml")


def test_yaml_nested_past_the_recursion_limit_is_a_spec_error() -> None:
    text = "name: f\nfunc: [{name: a, cmd: cat}]\ndeep: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(SpecError, match="nests too deep"):
        load_flow_text(text, source="deep.yaml")


def test_validate_lists_field_and_name_problems_together_in_line_order() -> None:
    text = (
        "name: f\n"  # 1
        "func:\n"  # 2
        "  - name: a\n"  # 3
        "    cmd: cat\n"  # 4
        "    size: {min: 3, max: 1}\n"  # 5
        "  - name: a\n"  # 6
        "    cmd: cat\n"  # 7
        "    sub: [{name: ghost}]\n"  # 8
    )
    with pytest.raises(SpecError) as err:
        load_flow_text(text, source="f.yaml")
    assert err.value.problems == [
        "f.yaml:5: func[0] (a).size: max (1) must be >= min (3)",
        "f.yaml:6: func[1] (a).name: duplicate pool name 'a'",
        "f.yaml:8: func[1] (a).sub[0].name: unknown pool 'ghost' (pools: a)",
    ]

"""Subscription filters, as the original DROP and the label convention define them."""

from __future__ import annotations

import pytest

from drop.bus import compile_filter, label_of


@pytest.mark.parametrize("text", [None, "", "no", "No", "  "])
def test_no_filter_passes_everything(text: str | None) -> None:
    assert compile_filter(text) is None


def test_substring_filter_is_the_original_behaviour() -> None:
    match = compile_filter("tag:matched")
    assert match is not None
    assert [match(s) for s in ("tag:matched,1", "x tag:matched", "tag:match")] == [
        True,
        True,
        False,
    ]


def test_label_filter_matches_only_that_label() -> None:
    match = compile_filter("label:fail")
    assert match is not None
    lines = ["tag:fail,1.2.3.4", "tag:fail", "tag:failure,x", "x tag:fail,y", "tag:pass,z"]
    assert [match(s) for s in lines] == [True, True, False, False, False]
    assert [label_of(s) for s in lines] == ["fail", "fail", "failure", None, "pass"]


def test_regex_filter_searches() -> None:
    match = compile_filter(r"re:\bport \d+$")
    assert match is not None
    assert [bool(match(s)) for s in ("on port 22", "port 22x", "sport 22")] == [True, False, False]

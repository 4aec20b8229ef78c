"""Subscription filters: which output lines a subscriber wants.

``None``/empty/``no``: every line (the original's "no filter").
``label:NAME``: lines carrying label NAME, i.e. ``tag:NAME,REST`` or ``tag:NAME``.
``re:REGEX``: lines the regex finds (``re.search``).
Anything else: lines that contain the text (the original's substring match).
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: A compiled filter (a truthy result passes the line); ``None`` means every line.
LineFilter = Callable[[str], object] | None


def compile_filter(text: str | None) -> LineFilter:
    """Compile a filter written in a flow.

    Raises:
        ValueError: for a ``re:`` filter whose regex does not compile.
    """
    if text is None or text.strip().lower() in ("", "no"):
        return None
    if text.startswith("label:"):
        label = text[6:]
        prefix = f"tag:{label},"
        exact = f"tag:{label}"
        return lambda line: line.startswith(prefix) or line == exact
    if text.startswith("re:"):
        return re.compile(text[3:]).search
    return lambda line: text in line


def label_of(line: str) -> str | None:
    """The label a line carries (``tag:LABEL,...``), or ``None``."""
    if not line.startswith("tag:"):
        return None
    end = line.find(",")
    return line[4:] if end < 0 else line[4:end]

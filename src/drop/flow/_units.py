"""Durations and sizes as people write them in YAML.

Durations are float seconds inside DROP. In a file they are a number with a
unit (``500ms``, ``2s``, ``1.5m``, ``1h``) or a bare number, whose unit
depends on the key: the original DROP's ``timeout`` counted milliseconds, so
a bare number there still does; everywhere else a bare number is seconds.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_BYTES = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(value: object, *, bare: str = "s") -> float:
    """Seconds from ``value``.

    Args:
        value: a number, or a string like ``"500ms"``, ``"2s"``, ``"1m"``.
        bare: the unit of a bare number (``"ms"`` for the original ``timeout``).

    Raises:
        ValueError: naming the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        number, unit = float(value), bare
    else:
        m = _DURATION.match(str(value))
        if m is None:
            unit_name = "milliseconds" if bare == "ms" else "seconds"
            raise ValueError(
                f"invalid duration {value!r}: write a number with a unit "
                f"(500ms, 2s, 1m, 1h) or a bare number of {unit_name}"
            )
        number, unit = float(m.group(1)), m.group(2) or bare
    if number < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return number * _SECONDS[unit]


def parse_size(value: object) -> int:
    """Bytes from ``value``: a number of bytes or a string like ``64KiB``, ``1MiB``.

    Raises:
        ValueError: naming the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if m is None:
        raise ValueError(f"invalid size {value!r}: write bytes (65536) or 64KiB, 1MiB, 1GiB")
    unit = (m.group(2) or "b")[0].lower()
    return int(m.group(1)) * _BYTES[unit]

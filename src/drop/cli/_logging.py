"""Structured log lines for the CLI's long-running commands (``logfmt``)."""

from __future__ import annotations

import logging
import sys

#: Extra fields DROP's loggers attach, printed when present.
_FIELDS = ("flow", "pool", "slot", "node")


class LogfmtFormatter(logging.Formatter):
    """``time=... level=warning logger=drop.pool._pool pool=x msg="..."``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace('"', '\\"')
        parts = [
            f"time={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
        ]
        parts += [f"{k}={getattr(record, k)}" for k in _FIELDS if hasattr(record, k)]
        parts.append(f'msg="{message}"')
        if record.exc_info:
            parts.append(f'exc="{self.formatException(record.exc_info)!r}"')
        return " ".join(parts)


def setup_logging(level: int = logging.WARNING) -> None:
    """Send DROP's log records to stderr as logfmt lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger("drop")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level)

"""DROP errors as HTTP answers a client can act on."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from drop.errors import (
    Conflict,
    DropError,
    FlowError,
    LineTooLong,
    NotFound,
    PoolFailed,
    PoolFull,
    PoolStopped,
    ProtocolError,
    SpecError,
    StateConflict,
    StateError,
    WorkerError,
    WorkerTimeout,
)

#: Most specific first: the first class the error is an instance of wins.
_STATUS: tuple[tuple[type[DropError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (SpecError, 422),
    (PoolFull, 429),
    (LineTooLong, 413),
    (WorkerTimeout, 504),
    (WorkerError, 502),
    (ProtocolError, 400),
    (PoolFailed, 503),
    (PoolStopped, 503),
    (StateConflict, 409),
    (StateError, 503),
    (FlowError, 502),
)


def status_of(exc: DropError) -> int:
    """The HTTP status for ``exc`` (500 for an error with no mapping)."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(exc: DropError) -> dict[str, object]:
    """The JSON body of an error answer."""
    body: dict[str, object] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, SpecError):
        body["problems"] = exc.problems
    return body


async def drop_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI handler for every ``DropError`` a route lets through."""
    assert isinstance(exc, DropError)
    status = status_of(exc)
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse(error_body(exc), status_code=status, headers=headers)

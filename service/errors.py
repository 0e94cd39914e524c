"""Errors as JSON: `{"error": {"message", "limit", "request_id"}}` with a 4xx for anything the client can fix.

`APIError(status, message, limit=...)` is raised by routes and helpers; the handlers in `install` turn it, and
FastAPI's own validation errors, into that shape. Anything else is a bug: 500 with the request id, logged.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("service")


class APIError(Exception):
    def __init__(self, status: int, message: str, limit: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.limit = status, message, limit


class BodyTooLarge(APIError):
    """Raised by app.BodyLimit from `receive` once a streamed (chunked) body passes max_body_bytes."""

    def __init__(self, limit: int, setting: str = "max_body_bytes") -> None:
        super().__init__(413, f"request body larger than {setting}", limit={setting: limit})


def body_limit_error(error: BaseException | None) -> BodyTooLarge | None:
    """The BodyTooLarge behind `error`, if any. It rarely arrives bare: Starlette's BaseHTTPMiddleware reads the
    body in a task group (so an ExceptionGroup), and FastAPI's body parsing re-raises it as a 400 "There was an
    error parsing the body" `from` it — both would hide a 413 the client can act on."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BodyTooLarge):
            return error
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                if (found := body_limit_error(inner)) is not None:
                    return found
        error = error.__cause__ or error.__context__
    return None


def error_body(request: Request, message: str, limit: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "request_id": getattr(request.state, "request_id", None)}
    if limit is not None:
        body["limit"] = limit
    return {"error": body}


def _brief(error: RequestValidationError, most: int = 5) -> str:
    parts = []
    for item in error.errors()[:most]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error_body(request, error.message, error.limit), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(request, f"invalid request: {_brief(error)}"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if (too_large := body_limit_error(error)) is not None:
            return await _api_error(request, too_large)
        return JSONResponse(error_body(request, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        if (too_large := body_limit_error(error)) is not None:
            return await _api_error(request, too_large)
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body(request, f"internal error ({type(error).__name__})"), status_code=500)

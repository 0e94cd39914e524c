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
        return JSONResponse(error_body(request, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body(request, f"internal error ({type(error).__name__})"), status_code=500)

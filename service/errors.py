"""Errors as JSON: `{"error": {"message", "limit", "request_id"}}` with a 4xx for anything the client can fix.

`APIError(status, message, limit=...)` is raised by routes and helpers; the handlers in `install` turn it, and
FastAPI's and Starlette's own errors, into that shape. Anything else is a bug: 500 with the request id, logged.

One answer per kind of mistake on every JSON route, whoever parses the body (FastAPI for /edit, /outpaint and
/jobs; routers/invert.py itself, through `json_object`): a body that is not JSON by its Content-Type → 415 naming
the type sent and those accepted; bytes that are not JSON → 422 "invalid JSON: <what> at position N"; JSON that
is not an object → 422 "the JSON body must be an object with the fields …". An unknown path → 404 naming it and
the API's routes; a known path with another method → 405 naming the allowed ones, with `Allow`.
"""

from __future__ import annotations

import email.message
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match, Mount

log = logging.getLogger("service")

JSON_TYPE = "application/json"
# The depth named when a parser gives up on nesting: pydantic's JSON parser (jiter) refuses more than 200 levels,
# Python's json module ~1000 minus the stack in use; every body the service takes is at most 3 deep.
MAX_JSON_DEPTH = 200
SHOWN_CHARS = 120  # of a path or Content-Type quoted back in a message
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PARSE_FAILED = "There was an error parsing the body"  # FastAPI's 400 for anything but a JSONDecodeError
# A JSON string (escapes skipped, so brackets inside it do not count) or a bracket.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_LONG_INTEGER = re.compile(rb"\d{4301,}")  # Python's int_max_str_digits default (4300)


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


def shown(value: object) -> str:
    """`value` as a message quotes it: at most SHOWN_CHARS characters (a path, a Content-Type, a 4000-digit int)."""
    text = str(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}… ({len(text)} characters)"


# --- Content types and JSON bodies -------------------------------------------------------------------------------


def is_json_type(content_type: str | None) -> bool:
    """FastAPI's own rule (fastapi.routing.get_request_handler): application/json or application/*+json, parameters
    ignored; no Content-Type is not JSON (strict_content_type)."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def unsupported_media_type(content_type: str | None, accepted: Sequence[str]) -> APIError:
    """415 naming the Content-Type sent (or its absence) and the ones the route accepts."""
    got = repr(shown(content_type)) if content_type else "(none sent)"
    return APIError(415, f"unsupported Content-Type {got}; send {' or '.join(accepted)}",
                    limit={"content_types": list(accepted)})  # fmt: skip


def _too_deep_at(raw: bytes, limit: int = MAX_JSON_DEPTH) -> int | None:
    """Offset of the bracket that opens level limit + 1, outside strings; None if the body is not that deep."""
    depth = 0
    for token in _JSON_TOKENS.finditer(raw):
        char = raw[token.start()]
        if char in b"[{":
            depth += 1
            if depth > limit:
                return token.start()
        elif char in b"]}":
            depth -= 1
    return None


def invalid_json(raw: bytes | None, error: BaseException) -> APIError:
    """422 "invalid JSON: <what> at position N" for what Python's json module raised on `raw`."""
    where: int | None = None
    limit = None
    if isinstance(error, json.JSONDecodeError):
        what, where = error.msg, error.pos
    elif isinstance(error, UnicodeDecodeError):
        what, where = f"not UTF-8 ({error.reason})", error.start
    elif isinstance(error, RecursionError):
        what, limit = f"nested deeper than {MAX_JSON_DEPTH} levels", {"json_depth": MAX_JSON_DEPTH}
        where = _too_deep_at(raw) if raw else None
    elif "integer string conversion" in str(error):  # ValueError from int(): Python's int_max_str_digits
        what, limit = "an integer longer than 4300 digits", {"json_integer_digits": 4300}
        found = _LONG_INTEGER.search(raw) if raw else None
        where = found.start() if found else None
    else:
        what = shown(str(error)) or type(error).__name__
    at = f" at position {where}" if where is not None else ""
    return APIError(422, f"invalid JSON: {what}{at}", limit=limit)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _blank(raw: bytes) -> bool:
    return not raw or raw.isspace()


def not_an_object(model: type[BaseModel] | None, got: str) -> APIError:
    """422: the body parsed, but is not the object the route takes; names its fields (required ones marked)."""
    fields = ""
    if model is not None:
        names = [f"{name} (required)" if field.is_required() else name for name, field in model.model_fields.items()]
        fields = f" with the fields {', '.join(names)}"
    return APIError(422, f"the JSON body must be an object{fields}, not {got}")


def json_object(raw: bytes, model: type[BaseModel] | None = None) -> dict[str, Any]:
    """A route's own JSON parsing (/invert), with the same answers as FastAPI-parsed routes get from `install`."""
    if _blank(raw):
        raise not_an_object(model, "an empty body")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise invalid_json(raw, error) from None
    if not isinstance(value, dict):
        raise not_an_object(model, _kind(value))
    return value


def _json_body_model(request: Request) -> tuple[bool, type[BaseModel] | None]:
    """(does the matched route take a FastAPI-parsed JSON body, its model)."""
    field = getattr(request.scope.get("route"), "body_field", None)
    if field is None or isinstance(field.field_info, params.Form):  # File is a Form
        return False, None
    model = field.field_info.annotation
    return True, model if isinstance(model, type) and issubclass(model, BaseModel) else None


async def _raw_body(request: Request) -> bytes | None:
    """The body FastAPI read for this request (the handler gets the route's own Request, which caches it)."""
    try:
        return await request.body()
    except (RuntimeError, ClientDisconnect):  # consumed elsewhere, or the client left: no position then
        return None


def _brief(error: RequestValidationError, most: int = 5) -> str:
    parts = []
    for item in error.errors()[:most]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)


async def _validation_error(request: Request, error: RequestValidationError) -> APIError:
    takes_json, model = _json_body_model(request)
    content_type = request.headers.get("content-type")
    if takes_json and not is_json_type(content_type):
        # FastAPI then hands the raw bytes (or nothing) to the model: "Input should be a valid dictionary ...".
        return unsupported_media_type(content_type, [JSON_TYPE])
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        json_invalid = item.get("type") == "json_invalid" and len(loc) == 2 and loc[0] == "body"
        not_object = takes_json and loc == ("body",) and item.get("type") in ("model_attributes_type", "missing")
        if json_invalid or not_object:
            raw = await _raw_body(request)
            if raw is not None and _blank(raw):  # no body, or only whitespace (which FastAPI parses, and fails)
                return not_an_object(model, "an empty body")
            if json_invalid:
                what = (item.get("ctx") or {}).get("error", "JSON decode error")
                return APIError(422, f"invalid JSON: {what} at position {loc[1]}")
            return not_an_object(model, _kind(item.get("input")))
    return APIError(422, f"invalid request: {_brief(error)}")


# --- Unknown paths and methods -----------------------------------------------------------------------------------


def _prefixes(app: FastAPI) -> list[str]:
    try:
        paths = app.openapi().get("paths", {})  # built once, then cached by FastAPI
    except Exception:  # a schema that cannot be built must not turn a 404 into a 500
        log.exception("OpenAPI schema for the 404 message")
        paths = {}
    return sorted({"/" + path.strip("/").split("/")[0] for path in paths})


def not_found(request: Request) -> APIError:
    path = shown(request.url.path)
    served = ", ".join(_prefixes(request.app))
    return APIError(404, f"no route {request.method} {path}; this API serves {served} (the web page at /; "
                         "every route and its fields at /docs)")  # fmt: skip


def allowed_methods(request: Request, fallback: str | None) -> list[str]:
    """The methods some route serves at this path. A route per method (GET and DELETE /jobs/{id}) means
    Starlette's own `Allow` names only the first route it found; a Mount (/static) serves any, so its own header
    (StaticFiles: GET, HEAD) is kept."""
    allowed = set()
    for method in METHODS:
        scope = {**request.scope, "method": method}
        for route in request.app.router.routes:
            if not isinstance(route, Mount) and route.matches(scope)[0] == Match.FULL:
                allowed.add(method)
                break
    if not allowed and fallback:
        allowed = {m.strip().upper() for m in fallback.split(",") if m.strip()}
    return sorted(allowed)


def method_not_allowed(request: Request, fallback: str | None) -> tuple[APIError, list[str]]:
    allowed = allowed_methods(request, fallback)
    message = f"method {request.method} is not allowed on {shown(request.url.path)}; use {', '.join(allowed)}"
    return APIError(405, message, limit={"allowed_methods": allowed}), allowed


def install(app: FastAPI) -> None:
    def answer(request: Request, error: APIError, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(request, error.message, error.limit), status_code=error.status, headers=headers)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, error: APIError) -> JSONResponse:
        return answer(request, error)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, error: ClientDisconnect) -> JSONResponse:
        # The client left while its body was read, or timeouts.ReadTimeout gave up on a stalled body (its 408 went
        # out, and it drops this answer). Nobody reads it: not a bug, no traceback in the log.
        return answer(request, APIError(400, "the client disconnected before its request body was received"))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        return answer(request, await _validation_error(request, error))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if (too_large := body_limit_error(error)) is not None:
            return answer(request, too_large)
        headers = dict(error.headers or {})
        if error.status_code == 404 and request.scope.get("route") is None:  # no route matched (not a missing file)
            return answer(request, not_found(request), headers)
        if error.status_code == 404 and error.detail == "Not Found":  # a route's own (a missing /static file)
            return answer(request, APIError(404, f"not found: {request.method} {shown(request.url.path)}"), headers)
        if error.status_code == 405:
            refused, allowed = method_not_allowed(request, headers.pop("Allow", None))
            return answer(request, refused, {**headers, "Allow": ", ".join(allowed)})
        cause, parsing = error.__cause__, error.status_code == 400 and error.detail == _PARSE_FAILED
        if parsing and isinstance(cause, ValueError | RecursionError):
            # FastAPI's JSON parsing: nesting too deep (RecursionError), bytes that are not UTF-8, a huge integer.
            return answer(request, invalid_json(await _raw_body(request), cause), headers)
        return JSONResponse(error_body(request, str(error.detail)), status_code=error.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Rendered by ServerErrorMiddleware, outside app.RequestContext: the id header is set here.
        request_id = getattr(request.state, "request_id", None)
        headers = {"X-Request-ID": request_id} if request_id else None
        if (too_large := body_limit_error(error)) is not None:
            return answer(request, too_large, headers)
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body(request, f"internal error ({type(error).__name__})"), status_code=500,
                            headers=headers)  # fmt: skip

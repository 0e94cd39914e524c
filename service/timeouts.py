"""Slow and oversized clients: a header cap and read timeouts for the uvicorn server that `python -m service` runs.

uvicorn (0.54) with httptools — what `uvicorn[standard]` picks — caps neither the size of a request's headers nor
the time they take: a connection that sends nothing, or a byte a minute, stays open for ever, and a 200 KB header
is read and served. It has no body-read timeout either. Two pieces close those gaps:

- `http_protocol(max_header_bytes, timeout_s)`: uvicorn's HttpToolsProtocol with
  * a header cap: bytes received while a request's line and headers are incomplete are counted (so memory stays
    bounded by the cap plus one socket read), and so are the parsed line and headers once complete; past
    `max_header_bytes` the client gets 431 (the JSON error shape, `connection: close`);
  * a header deadline: from the connection's start, or from the first byte of a later request, its headers must be
    complete within `request_read_timeout_s`, else 408 and the connection is closed (idle keep-alive connections
    stay uvicorn's: closed after `keep_alive_timeout_s`);
  * a request answered before its body arrived (413 from a Content-Length, 401, the 408 below) has the rest of its
    connection drained for LINGER_S and then closed, instead of being read to its end (uvicorn reads on for as long
    as the client keeps sending: each byte disarms its keep-alive timer, which is never armed again).
  A refusal writes its answer, shuts the sending side, reads and drops what still comes for LINGER_S and then
  closes: closing at once with unread bytes would reset the connection and the client might never see the answer.
  Without httptools it returns "h11", whose own cap (`h11_max_incomplete_event_size`) answers 400; no deadline.
- `ReadTimeout` (pure ASGI, around the whole app): while the app waits for body bytes and has not started its
  answer, each `receive()` gets `request_read_timeout_s`; a body that stalls that long is answered 408 (with
  `request_id`, `limit` and `connection: close`); the app then receives `http.disconnect`, as if the client had
  gone, and whatever it answers is dropped. (Raising from `receive` instead would surface, through Starlette's
  BaseHTTPMiddleware task groups, as an "unhandled error" with a traceback.) It is an idle timeout, as nginx's
  client_body_timeout: an upload that keeps moving may take as long as it needs (a 2 GiB job archive does).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import re
import uuid
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("uvicorn.error")
LINGER_S = 2.0  # how long a refused connection is drained before it is closed
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # a caller's X-Request-ID is kept when it matches


def body_timeout_message(timeout_s: float) -> str:
    return f"request body not received within request_read_timeout_s ({timeout_s:g} s without a byte)"


def request_id_of(scope: Scope) -> str:
    """The id app.RequestContext gave this request, else the rule it uses: the caller's sane X-Request-ID, or a new
    one (for a refusal before the app saw the request: a 413 from a Content-Length, a 408)."""
    request_id = (scope.get("state") or {}).get("request_id")
    if request_id is None:
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex
    return request_id


class ReadTimeout:
    """Pure ASGI: 408 when the request body stalls for `timeout_s` while the app waits for it (see the module)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done, started, timed_out, answered = False, False, False, False

        async def timed() -> Message:
            nonlocal body_done, timed_out, answered
            if timed_out:
                return {"type": "http.disconnect"}
            if body_done or started:  # a listener for http.disconnect, or a body read after the answer began
                return await receive()
            try:
                async with asyncio.timeout(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                scope.setdefault("state", {})["read_timed_out"] = True  # app.RequestContext counts it as a 408
                client = (scope.get("client") or ("?",))[0]
                log.info("%s %s %s: 408, body stalled for %g s", client, scope["method"], scope["path"], self.timeout_s)
                if not started:
                    answered = True
                    await self._refuse(scope, send)
                return {"type": "http.disconnect"}  # what the app would see had the client gone
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if timed_out and not started:
                return  # the app's answer to the timeout: ours went out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed, guarded)
        except Exception:
            if not timed_out or (started and not answered):
                raise  # not the app's reaction to our 408: uvicorn's own handling applies
        if timed_out and not answered and not started:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        request_id = request_id_of(scope)
        body = {"error": {"message": body_timeout_message(self.timeout_s), "request_id": request_id,
                          "limit": {"request_read_timeout_s": self.timeout_s}}}  # fmt: skip
        response = JSONResponse(body, status_code=408, headers={"X-Request-ID": request_id, "Connection": "close"})
        await response(scope, None, send)  # type: ignore[arg-type]


def raw_error(status: int, message: str, limit: dict[str, Any], default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 answer in the service's error shape, for refusals before any ASGI scope exists."""
    request_id = uuid.uuid4().hex
    body = json.dumps({"error": {"message": message, "limit": limit, "request_id": request_id}}).encode()
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body),
              b"x-request-id: " + request_id.encode(), b"connection: close"]  # fmt: skip
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def http_protocol(max_header_bytes: int, timeout_s: float) -> type[asyncio.Protocol] | str:
    """The protocol class for `uvicorn.run(http=...)`: httptools with the header cap and deadline, else "h11"."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools (uvicorn without [standard]): h11, capped by h11_max_incomplete_event_size
        return "h11"

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.headers_pending = True  # from the start and after each message, until a request's headers are in
            self.received = 0  # bytes received while headers were pending
            self.parsed = 0  # request line + headers of the current request, as parsed
            self.oversized = False
            self.refused = False
            self.deadline: asyncio.TimerHandle | None = None

        # Connection
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()  # uvicorn itself would wait for the first byte for ever

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.refused:
                return  # draining a refused connection: read and dropped
            if self.headers_pending:
                self.received += len(data)
            super().data_received(data)
            if self.refused or self.transport.is_closing():
                return  # uvicorn's own 400 (unparseable request) closed it
            if self.oversized or (self.headers_pending and self.received > max_header_bytes):
                self._refuse(431, "request line and headers larger than max_header_bytes",
                             {"max_header_bytes": max_header_bytes})  # fmt: skip

        def on_response_complete(self) -> None:
            super().on_response_complete()
            cycle = self.cycle
            if cycle is not None and cycle.response_complete and cycle.more_body and not self.transport.is_closing():
                self._linger()  # answered before its body was in: not read to its end

        # Parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.parsed = 0
            self._arm()  # the first request's deadline counts from the connection's start (already armed)

        def on_url(self, url: bytes) -> None:
            self.parsed += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.parsed += len(name) + len(value) + 4  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            self.headers_pending, self.received = False, 0
            if self.parsed > max_header_bytes:
                self.oversized = True  # no request cycle: data_received answers 431 when the parser returns
                return
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not (self.oversized or self.refused):
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self.oversized or self.refused:
                return
            super().on_message_complete()
            self.headers_pending, self.received = True, 0

        # Deadline and refusals
        def _arm(self) -> None:
            if self.deadline is None:
                self.deadline = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _expired(self) -> None:
            self.deadline = None
            if self.refused or self.transport.is_closing() or not self.headers_pending:
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self._arm()  # pipelined headers while an earlier answer is on its way: never interleave
                return
            self._refuse(408, f"request headers not received within request_read_timeout_s ({timeout_s:g} s)",
                         {"request_read_timeout_s": timeout_s})  # fmt: skip

        def _refuse(self, status: int, message: str, limit: dict[str, Any]) -> None:
            self._disarm()
            if self.cycle is not None and not self.cycle.response_complete:
                self.refused = True
                self.transport.close()  # an earlier request's answer is on the wire: no room for ours
                return
            self.transport.write(raw_error(status, message, limit, self.server_state.default_headers))
            self.logger.info("%s %s: %s", self.client and self.client[0], status, message)
            self._linger()

        def _linger(self) -> None:
            self.refused = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.flow.resume_reading()  # drain what the client still sends, so that closing does not reset
            self.loop.call_later(LINGER_S, self.transport.close)

    return GuardedHttpToolsProtocol

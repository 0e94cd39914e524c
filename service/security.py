"""API keys, per-key rate limits and CORS: all off by default, each one setting away.

Keys are compared with `hmac.compare_digest` against every configured key (constant time in the key's content, so
timing tells an attacker nothing about how much of a guess matched). No key → 401 with `WWW-Authenticate`; a key
that matches none → 403. Keys never reach logs or metrics: a request is identified by `key#<index>`.
Rate limits use the `limits` library (moving window, in memory — per API process; several replicas would share a
Redis storage instead) and answer 429 with `Retry-After`.

Wrong keys are throttled per client IP (`auth_failure_limit`, default 10 per minute, moving window): once a client
has sent that many keys that match none, every request of its that needs a key — right key, wrong key or none — is
answered 429 with `Retry-After` until the oldest failure leaves the window. A right key is refused too, on purpose:
if it were still checked, the throttle would be an oracle (200 against 429) and guessing would go on at full speed;
a legitimate client sharing the address waits at most one window. Throttled requests are not compared with the keys
and do not count as further failures; missing keys (401) and accepted keys never count. The client IP is what
uvicorn reports (behind a proxy on 127.0.0.1 it takes X-Forwarded-For; see uvicorn's `forwarded_allow_ips`).
"""

from __future__ import annotations

import hmac
import math
import time

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body
from service.settings import Settings


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def match_key(candidate: str, keys: list[str]) -> int | None:
    """Index of the matching key; every key is compared (no early exit) so the time does not depend on which."""
    found = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(candidate.encode(), key.encode()):
            found = index
    return found


class AccessControl:
    """Pure ASGI (not `@app.middleware("http")`, whose task group and response re-wrapping cost most of the
    per-request time at one image per request: app.RequestContext): keys, the wrong-key throttle and rate limits,
    answered before the app sees the request. The identity (`key#N` or `ip:ADDRESS`) goes to
    `scope["state"]["identity"]`."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.limiter = MovingWindowRateLimiter(MemoryStorage()) if settings.rate_limit else None
        self.rate = parse(settings.rate_limit) if settings.rate_limit else None
        # Wrong keys per client IP (its own storage: a client's failures never eat into a key's rate limit).
        self.failure_rate = (parse(settings.auth_failure_limit)
                             if settings.api_keys and settings.auth_failure_limit else None)  # fmt: skip
        self.failures = MovingWindowRateLimiter(MemoryStorage()) if self.failure_rate is not None else None

    def public(self, scope: Scope) -> bool:
        # The page and its static files hold no data and a browser cannot send a key when it loads them; the page's
        # own API calls carry the key the user pastes in.
        path = scope["path"]
        return (path in self.settings.public_paths or path == "/" or path.startswith("/static/")
                or scope["method"] == "OPTIONS")  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.public(scope):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> JSONResponse | None:
        """The 401/403/429 for this request, or None (then its identity is in the request's state)."""
        settings, failures, failure_rate = self.settings, self.failures, self.failure_rate
        client_ip = request.client.host if request.client else "unknown"
        identity = f"ip:{client_ip}"
        if settings.api_keys:
            if failures is not None and failure_rate is not None and not failures.test(failure_rate, client_ip):
                reset, _ = failures.get_window_stats(failure_rate, client_ip)
                retry = max(1, math.ceil(reset - time.time()))
                message = (f"too many wrong API keys from {client_ip}: every request that needs a key is refused "
                           f"for {retry} s (auth_failure_limit {failure_rate})")  # fmt: skip
                return JSONResponse(error_body(request, message, {"auth_failure_limit": str(failure_rate)}),
                                    status_code=429, headers={"Retry-After": str(retry)})  # fmt: skip
            key = presented_key(request)
            if key is None:
                return JSONResponse(error_body(request, "missing API key: send X-API-Key or Authorization: Bearer"),
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
            index = match_key(key, settings.api_keys)
            if index is None:
                if failures is not None and failure_rate is not None:
                    failures.hit(failure_rate, client_ip)
                return JSONResponse(error_body(request, "API key not accepted"), status_code=403)
            identity = f"key#{index}"
        request.state.identity = identity
        if self.limiter is not None and self.rate is not None and not self.limiter.hit(self.rate, identity):
            reset, _ = self.limiter.get_window_stats(self.rate, identity)
            retry = max(1, math.ceil(reset - time.time()))
            return JSONResponse(error_body(request, f"rate limit exceeded for {identity}",
                                           {"rate_limit": str(self.rate)}),
                                status_code=429, headers={"Retry-After": str(retry)})  # fmt: skip
        return None


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(AccessControl, settings=settings)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
                           expose_headers=["X-Request-ID", "Location"])  # fmt: skip

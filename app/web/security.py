"""Safe defaults for the web process: API token, page login, CSRF tokens, request size limit."""
from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from fastapi import HTTPException, Request, status

from app.core.settings import Settings

MAX_BODY = 1024 * 1024  # request bodies over 1 MB get 413
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def session_secret(settings: Settings) -> str:
    """The cookie-signing secret: kept in $FITBOARD_HOME so logins survive a restart."""
    path = Path(settings.home) / "session_secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token (created on first use), for forms and the page's fetch calls."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """Refuse a browser write whose CSRF token is missing or wrong."""
    expected = request.session.get("csrf")
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or invalid CSRF token; reload the page and retry")


def logged_in(request: Request) -> bool:
    """True when no token is configured or this browser logged in with it."""
    return not request.app.state.settings.api_token or bool(request.session.get("auth"))


async def require_api_auth(request: Request) -> None:
    """API guard: a Bearer token, or a logged-in browser session whose writes carry the CSRF header."""
    # async although it awaits nothing: a sync dependency would cost every API call a thread-pool round trip.
    token = request.app.state.settings.api_token
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        if token and not token_matches(header[7:].strip(), token):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API token",
                                headers={"WWW-Authenticate": "Bearer"})
        return
    if token and not request.session.get("auth"):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "send Authorization: Bearer <FITBOARD_API_TOKEN>",
                            headers={"WWW-Authenticate": "Bearer"})
    if request.method in UNSAFE and "fitboard_session" in request.cookies:
        check_csrf(request, request.headers.get("x-csrf-token"))  # a cookie alone must not authorize a write


class BodyLimit:
    """ASGI middleware: answer 413 for bodies over MAX_BODY, declared or streamed."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await _too_large(send)


class _TooLarge(Exception):
    """A streamed body went past the limit."""


async def _too_large(send) -> None:
    """Send a JSON 413."""
    body = b'{"detail": "request body larger than 1 MB"}'
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

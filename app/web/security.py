"""Safe defaults for the web process: API token, page login and its session, throttling, CSRF tokens."""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import time
from base64 import b64decode
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request, status
from itsdangerous import BadSignature, TimestampSigner
from starlette.requests import cookie_parser

from fitboard.app.core.credentials import looks_like_token
from fitboard.app.core.settings import Settings

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
MIN_TOKEN_CHARS = 32
THROTTLE_WINDOW = 60.0  # seconds over which failed logins and wrong tokens are counted per client address
TOO_MANY = "too many failed attempts; wait and retry"
SESSION_COOKIE = "fitboard_session"
SESSION_MAX_AGE = 14 * 24 * 3600  # seconds a login lasts


def write_private(path: Path, text: str, replace: bool = True) -> bool:
    """Write a 0600 file atomically (a temporary file renamed or linked in place); False if it existed and
    replace is off, so two processes starting at once keep the first one's secret."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails when the file exists: never overwrite another process's secret
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)


def private_home(settings: Settings) -> Path:
    """$FITBOARD_HOME, created 0700 (it holds the session secret and the database)."""
    home = Path(settings.home)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077:
        home.chmod(0o700)
    return home


def session_secret(settings: Settings) -> str:
    """The cookie-signing secret: kept in $FITBOARD_HOME (0600) so logins survive a restart."""
    path = private_home(settings) / "session_secret"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(32), replace=False)
    return path.read_text().strip()


def check_token_strength(settings: Settings) -> None:
    """Refuse to serve with a guessable API token."""
    token = settings.api_token
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise SystemExit(f"FITBOARD_API_TOKEN has {len(token)} characters; use at least {MIN_TOKEN_CHARS}, e.g. "
                         "python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def token_digest(secret: str, token: str) -> str:
    """A keyed hash of the API token: what a login session holds, so a token change ends every session."""
    return hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()[:32]


class SessionEpoch:
    """A counter in $FITBOARD_HOME/session_epoch; sessions carry the value they logged in under and a logout moves
    it on, which ends every session signed before (a signed cookie cannot be recalled one by one)."""

    def __init__(self, home: Path):
        self.path, self._seen = Path(home) / "session_epoch", (None, "0")

    def current(self) -> str:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return "0"
        if self._seen[0] != stamp:  # re-read only when another process (or a logout) changed it
            self._seen = (stamp, self.path.read_text().strip() or "0")
        return self._seen[1]

    def advance(self) -> None:
        write_private(self.path, secrets.token_hex(8))


class AuthThrottle:
    """Failed logins and wrong bearer tokens per client address: past `limit` in a minute, 429 until one expires."""

    def __init__(self, limit: int, window: float = THROTTLE_WINDOW):
        self.limit, self.window, self.failures = limit, window, {}

    def retry_after(self, address: str) -> int | None:
        """Seconds this address must wait, or None when it may try."""
        seen = self.failures.get(address)
        if not seen:
            return None
        now = time.monotonic()
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen:
            del self.failures[address]
            return None
        return max(1, math.ceil(seen[0] + self.window - now)) if len(seen) >= self.limit else None

    def fail(self, address: str) -> None:
        if len(self.failures) > 10_000:
            self.failures.clear()  # a bound on memory; a flood of addresses only resets the counts
        self.failures.setdefault(address, deque(maxlen=self.limit)).append(time.monotonic())


def client_address(request_or_scope) -> str:
    """The peer address (the proxy's, behind one: run uvicorn with --proxy-headers to see the client's)."""
    client = request_or_scope.get("client") if isinstance(request_or_scope, dict) else request_or_scope.client
    return client[0] if client else "unknown"


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


async def form_data(request: Request) -> dict[str, str]:
    """The submitted form fields, CSRF-checked (the one await, so the routes stay plain def)."""
    form = await request.form()
    data = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    check_csrf(request, data.get("csrf_token"))
    return data


def log_in(request: Request) -> None:
    """Mark this browser's session as logged in under the current token and session epoch."""
    state = request.app.state
    request.session["auth"] = token_digest(state.session_secret, state.settings.api_token)
    request.session["epoch"] = state.session_epoch.current()


def log_out(request: Request) -> None:
    """End this session, and (by moving the epoch on) every session signed before, copies of the cookie included."""
    request.session.pop("auth", None)
    request.session.pop("epoch", None)
    request.app.state.session_epoch.advance()


def logged_in(request: Request) -> bool:
    """True when no token is configured, or this browser logged in with the current token since the last logout."""
    state = request.app.state
    return not state.settings.api_token or _session_valid(state, request.session)


@dataclass(frozen=True)
class Caller:
    """Who a request is, as its headers alone say: how it proved it (token, session, open) and whether its writes
    must carry the CSRF header (a cookie alone must not authorize a write)."""

    via: str  # "token": a Bearer token; "session": a logged-in browser; "open": no token configured
    cookie: bool = False  # the request carries the session cookie (its writes need X-CSRF-Token)


class AuthRefused(Exception):
    """The headers prove no caller: 401 (no or wrong credentials) or 429 (throttled), with its headers."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str]):
        super().__init__(detail)
        self.status_code, self.detail, self.headers = status_code, detail, headers

    def http(self) -> HTTPException:
        return HTTPException(self.status_code, self.detail, headers=self.headers)


def _session_of(state, cookie_header: str) -> dict:
    """The signed session cookie's content (as SessionMiddleware reads it), or {} when absent, forged or expired."""
    raw = cookie_parser(cookie_header).get(SESSION_COOKIE)
    if not raw:
        return {}
    try:
        data = TimestampSigner(str(state.session_secret)).unsign(raw.encode("utf-8"), max_age=SESSION_MAX_AGE)
        session = json.loads(b64decode(data))
    except (BadSignature, ValueError):
        return {}
    return session if isinstance(session, dict) else {}


def _session_valid(state, session: dict) -> bool:
    """The session logged in under the current token since the last logout."""
    auth = session.get("auth")
    return (isinstance(auth, str) and hmac.compare_digest(auth, token_digest(state.session_secret,
                                                                             state.settings.api_token))
            and session.get("epoch") == state.session_epoch.current())


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    """The token of an Authorization: Bearer header, or None without one."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


def _people(state) -> bool:
    """Whether anyone has an account (the directory's fresh word, else the database's)."""
    known = state.directory.people_known()
    return known if known is not None else state.directory.people_now(state.engine)


def reads_database(state, headers: dict[bytes, bytes]) -> bool:
    """Whether identify asks the database for these headers (a person's token; whether anyone has an account, when
    that is not known afresh): the gate then calls it in a worker thread, never on the event loop."""
    given, site = _bearer(headers), state.settings.api_token
    if given is not None and looks_like_token(given) and not (site and token_matches(given, site)):
        return True
    return not site and state.directory.people_known() is None


def identify(state, headers: dict[bytes, bytes], address: str) -> Caller:
    """Who this request is, from its headers alone (before any body is read). AuthRefused when the headers prove no
    caller; a wrong token counts against the address's throttle. A person's token is checked by the directory
    (app.web.principals), the same cached lookup the access check makes; a person's browser session is signed, and
    app.web.access checks it is still valid. May read the database: see reads_database."""
    site, given = state.settings.api_token, _bearer(headers)
    cookie = headers.get(b"cookie", b"").decode("latin-1")
    has_cookie = SESSION_COOKIE in cookie
    if given is not None:
        # Throttled addresses are refused before the comparison, so guessing on cannot tell a right token either.
        throttle = state.auth_throttle
        if throttle.failures and (wait := throttle.retry_after(address)) is not None:
            raise AuthRefused(429, TOO_MANY, {"Retry-After": str(wait)})
        if site and token_matches(given, site) or state.directory.token_holder(state.engine, given) is not None:
            return Caller("token")
        if not site and not _people(state):
            return Caller("open")  # zero-config: nothing to check a token against
        throttle.fail(address)
        raise AuthRefused(401, "invalid, revoked or expired API token", {"WWW-Authenticate": "Bearer"})
    session = _session_of(state, cookie) if has_cookie else {}
    if isinstance(session.get("person"), int) or site and _session_valid(state, session):
        return Caller("session", cookie=True)
    if not site and not _people(state):
        return Caller("open", cookie=has_cookie)
    raise AuthRefused(401, "send Authorization: Bearer <token>, or log in", {"WWW-Authenticate": "Bearer"})

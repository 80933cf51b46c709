"""ASGI layers every request passes: the Host allow-list, the cross-site write refusal, security headers on every
answer, the session cookie's Secure flag, and the 1 MB body limit (declared or chunked)."""
from __future__ import annotations

import json
import logging
import re
import socket
from urllib.parse import parse_qsl, urlsplit

from fitboard.app.core.settings import Settings
from fitboard.app.core.tracked import MAX_MODEL_BYTES
from fitboard.app.web.security import UNSAFE

log = logging.getLogger("fitboard.web")
MAX_BODY = 1024 * 1024  # request bodies over 1 MB get 413
# ...except image uploads to a model (10 MB of images, checked by the service, plus the multipart framing)
MAX_PREDICT_BODY = 11 * 1024 * 1024
# ...and a tracked run's exported model (fitboard.app.api.tracked streams it to disk and checks the same bound)
MAX_MODEL_UPLOAD = MAX_MODEL_BYTES
TRACKED_MODEL = re.compile(r"^/api/v1/tracked/\d+/model$")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")

# Only fitboard's own scripts and styles; the pages' data rides in <script type="application/json">, which is not
# executed. img-src allows data: for the icons Swagger UI's stylesheet embeds, and blob: for the Predict card's
# previews of the images the user chose (object URLs of their own files).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
CROSS_SITE = (b"cross-site", b"same-site")  # Sec-Fetch-Site values of a request another site's page started


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """Host names this server answers to, lower case without port; None means any ("*")."""
    if settings.allowed_hosts:
        names = {h.strip().lower().strip("[]") for h in settings.allowed_hosts.split(",") if h.strip()}
        return None if "*" in names else frozenset(names)
    names = set(LOOPBACK_NAMES)
    try:
        names.add(socket.gethostname().lower())
    except OSError:
        pass
    if settings.bind_host and settings.bind_host not in WILDCARD_BINDS:
        names.add(settings.bind_host.lower().strip("[]"))
    return frozenset(names)


def host_name(value: bytes) -> str:
    """'Example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    host = value.decode("latin-1").strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def answer(send, status: int, detail: str | list, secured: bool = False, headers: dict | None = None) -> None:
    """A small JSON error answer in the API's error shape (a 422's detail: its list of problems); secured: add the
    security headers (WebGuard's own answers; the layers inside it get them from WebGuard); headers: more of them
    (Retry-After, Connection...)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
               *(SECURITY_HEADERS if secured else [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def nul_field(query_string: bytes) -> str | None:
    """The first query parameter whose name or value holds a NUL character, or None."""
    if b"%00" not in query_string and b"\x00" not in query_string:
        return None
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "")[:40] or "?"
    return None


class WebGuard:
    """Outermost layer: refuse unknown Host names (DNS rebinding) and writes a browser marks as cross-site (a
    hostile page's form or fetch, with or without cookies); add the security headers to every answer."""

    def __init__(self, app, settings: Settings):
        self.app, self.hosts = app, allowed_hosts(settings)
        self.secure = settings.cookie_secure

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"")
        # /healthz answers any Host: container and load-balancer probes call it by address, and it reveals nothing.
        if self.hosts is not None and host_name(host) not in self.hosts and scope["path"] != "/healthz":
            return await answer(send, 400, "this server does not answer to that Host name; "
                                            "add it to FITBOARD_ALLOWED_HOSTS", secured=True)
        if scope["method"] in UNSAFE and _cross_site(headers, host):
            return await answer(send, 403, "cross-site request refused", secured=True)
        secure = self.secure if self.secure is not None else scope.get("scheme") == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                raw = list(message.get("headers") or [])
                if secure:
                    raw = [(k, v + b"; secure" if k == b"set-cookie" and b"secure" not in v.lower() else v)
                           for k, v in raw]
                message = {**message, "headers": raw + SECURITY_HEADERS}
            await send(message)

        started = False

        async def send_tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            if started:
                raise  # an answer already under way cannot be completed: the server closes the connection
            # Answer here, in the API's error shape and with the headers, log it, and return normally: re-raised,
            # the server would reset the kept-alive connection and the client's next request would fail too.
            log.exception("internal error answering %s %s", scope["method"], scope["path"])
            await answer(send, 500, "internal error; the server log has the details", secured=True)


def _cross_site(headers: dict, host: bytes) -> bool:
    """Whether the browser says another site started this request (requests without these headers, such as
    scripts, curl and `fitboard submit`, are not cross-site)."""
    if headers.get(b"sec-fetch-site") in CROSS_SITE:
        return True
    origin = headers.get(b"origin")
    if origin is None:
        return False
    return origin == b"null" or urlsplit(origin.decode("latin-1")).netloc.lower() != host.decode("latin-1").lower()


class BodyLimit:
    """ASGI middleware: answer 413 for bodies over MAX_BODY (MAX_PREDICT_BODY for image uploads to a run's model),
    declared or streamed (chunked)."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.default_limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = MAX_PREDICT_BODY if scope["path"].endswith("/predict") else self.default_limit
        if scope["method"] == "PUT" and TRACKED_MODEL.match(scope["path"]):
            limit = MAX_MODEL_UPLOAD
        too_large = f"request body larger than {limit // (1024 * 1024)} MB"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await answer(send, 413, too_large)
        seen, cut = 0, CutShort(send)

        async def limited_receive():
            nonlocal seen
            if cut.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not cut.started:
                # Answer now, while the app is still reading: the app only sees the client leave, and whatever it
                # makes of that (FastAPI calls it a 400) is not sent.
                return await cut.refuse(413, too_large)
            return message

        await cut.run(self.app, scope, limited_receive)


class CutShort:
    """A request a layer may answer itself while the app still reads its body (BodyLimit's 413, BodyFirst's 408):
    once refused, the app sees the client leave, its own answer is dropped and what it raises over it is swallowed."""

    def __init__(self, send):
        self.send, self.refused, self.started = send, False, False

    async def refuse(self, status: int, detail: str, headers: dict | None = None) -> dict:
        """Answer status (unless the app's answer has begun); returns the disconnect the app is to receive."""
        self.refused = True
        if not self.started:
            await answer(self.send, status, detail, headers=headers)
        return {"type": "http.disconnect"}

    async def guarded_send(self, message) -> None:
        """The app's send: passed on until the request is refused."""
        if not self.refused:
            self.started = True
            await self.send(message)

    async def run(self, app, scope, receive) -> None:
        """Call the app with receive and the guarded send; what it raises once refused is swallowed."""
        try:
            await app(scope, receive, self.guarded_send)
        except Exception:
            if not self.refused:
                raise


class CompleteAllow:
    """ASGI middleware: a 405 names every method the path answers to in Allow, as the OpenAPI document lists them
    (Starlette names only those of the first route whose path matches, so `OPTIONS /api/v1/runs` said `Allow: POST`
    although GET works too). Paths the document does not describe keep Starlette's answer."""

    def __init__(self, app, outer):
        self.app, self.outer = app, outer  # outer: the FastAPI app, whose document lists the paths
        self.paths: list[tuple[re.Pattern, bytes]] | None = None

    def _allowed(self, path: str) -> bytes | None:
        if self.paths is None:  # built once, on the first 405: the document is complete by then
            self.paths = []
            for template, operations in self.outer.openapi().get("paths", {}).items():
                regex = re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$")
                methods = {m.upper() for m in operations}
                methods |= {"HEAD"} if "GET" in methods else set()
                self.paths.append((regex, ", ".join(sorted(methods)).encode()))
        return next((allow for regex, allow in self.paths if regex.match(path)), None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_allow(message):
            if message["type"] == "http.response.start" and message["status"] == 405:
                allow = self._allowed(scope["path"])
                if allow:
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                    message = {**message, "headers": [*headers, (b"allow", allow)]}
            await send(message)

        await self.app(scope, receive, send_with_allow)

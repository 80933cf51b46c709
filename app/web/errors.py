"""The one place where domain errors become HTTP answers: JSON under /api, the not-found page for browsers."""
from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from fitboard.app.core.errors import FitboardError, NotFound, RecipeError
from fitboard.app.core.redact import redact
from fitboard.app.core.schemas import field_path
from fitboard.app.pages.render import render

API_PREFIX = "/api/"
TITLES = {403: "Not allowed", 404: "Not found", 405: "Not allowed here", 409: "Not now", 413: "Too large",
          422: "Not accepted", 429: "Too many tries"}


def _body_loc(loc: tuple) -> str:
    """A request-validation location as a field path, without FastAPI's leading 'body'."""
    if loc[:1] == ("header",) and len(loc) == 2:
        return f"header.{loc[1]}"  # a header's name (Last-Event-ID) is no identifier: field_path would drop it
    return field_path(tuple(loc[1:] if loc[:1] == ("body",) else loc))


def public(request: Request, text: str) -> str:
    """An error text as the client may see it: credentials redacted, paths under the data root made relative."""
    text = redact(text)
    root = str(request.app.state.settings.data_root)
    return text.replace(root + "/", "").replace(root, ".") if root not in ("", "/") else text


def _public_problems(request: Request, problems: list[dict]) -> list[dict]:
    return [{**p, "msg": public(request, p["msg"])} if isinstance(p.get("msg"), str) else p for p in problems]


def _for_a_page(request: Request) -> bool:
    """Whether a refusal is answered as a page: a browser's (it asks for HTML) outside the API; scripts and probes
    that call a page's path keep the JSON answer."""
    return not request.url.path.startswith(API_PREFIX) and "text/html" in request.headers.get("accept", "")


def _back(request: Request) -> str | None:
    """The page the browser came from, when it is one of this site's (a form's page): where 'Back' goes."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc == request.headers.get("host") and referer.path.startswith("/"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return None


def refused_page(request: Request, status_code: int, detail: str = "", problems: list[dict] | None = None,
                 headers: dict | None = None):
    """A refusal (403 from the access check, a form's 422, a 409...) as a page with its reason and a way back, where
    the API answers JSON."""
    response = render(request, "refused.html", status_code, title=TITLES.get(status_code, "Refused"),
                      detail=detail, problems=problems, back=_back(request))
    response.headers.update(headers or {})
    return response


def install_error_handlers(app: FastAPI) -> None:
    """422 with a field path per problem, 404 unknown things, 409 conflicts; a browser's page request gets the
    not-found page or a page saying why it was refused."""

    @app.exception_handler(FitboardError)
    def domain_error(request: Request, exc: FitboardError):
        if isinstance(exc, NotFound) and not request.url.path.startswith(API_PREFIX):
            return render(request, "not_found.html", 404, what=exc.what)
        if isinstance(exc, RecipeError):
            detail = _public_problems(request, exc.problems)
        else:
            detail = public(request, str(exc))
        headers = {"Retry-After": "5"} if exc.status_code == 503 else None
        if _for_a_page(request):
            problems = detail if isinstance(detail, list) else None
            return refused_page(request, exc.status_code, "" if problems else detail, problems, headers)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        # A redirect (303 to the login page) and the API's answers stay as FastAPI makes them.
        if _for_a_page(request) and 400 <= exc.status_code < 500 and exc.status_code != 401 \
                and "location" not in {k.lower() for k in exc.headers or {}}:
            detail = str(exc.detail)
            if exc.status_code == 404 and detail == "Not Found":  # Starlette's, for a path no route serves
                detail = f"There is no page at {request.url.path[:200]}."
            return refused_page(request, exc.status_code, detail, headers=exc.headers)
        return await http_exception_handler(request, exc)

    @app.exception_handler(PoolTimeout)
    def no_connection(request: Request, exc: PoolTimeout):
        # The admission limit keeps this from happening; if the pool is still exhausted, say so and come back.
        return JSONResponse({"detail": "the server is busy; retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError):
        # once each: a path parameter that a dependency reads too (the access checks' run_id) is validated twice
        seen = {(_body_loc(tuple(e["loc"])), e["msg"]): None for e in exc.errors()}
        problems = _public_problems(request, [{"loc": loc, "msg": msg} for loc, msg in seen])
        if _for_a_page(request):
            return refused_page(request, 422, problems=problems)
        return JSONResponse({"detail": problems}, status_code=422)

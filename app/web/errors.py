"""The one place where domain errors become HTTP answers: JSON under /api, the not-found page for browsers."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout

from fitboard.app.core.errors import FitboardError, NotFound, RecipeError
from fitboard.app.core.redact import redact
from fitboard.app.core.schemas import field_path
from fitboard.app.pages.render import render

API_PREFIX = "/api/"


def _body_loc(loc: tuple) -> str:
    """A request-validation location as a field path, without FastAPI's leading 'body'."""
    return field_path(tuple(loc[1:] if loc[:1] == ("body",) else loc))


def public(request: Request, text: str) -> str:
    """An error text as the client may see it: credentials redacted, paths under the data root made relative."""
    text = redact(text)
    root = str(request.app.state.settings.data_root)
    return text.replace(root + "/", "").replace(root, ".") if root not in ("", "/") else text


def _public_problems(request: Request, problems: list[dict]) -> list[dict]:
    return [{**p, "msg": public(request, p["msg"])} if isinstance(p.get("msg"), str) else p for p in problems]


def install_error_handlers(app: FastAPI) -> None:
    """422 with a field path per problem, 404 unknown things, 409 conflicts; pages get the not-found page."""

    @app.exception_handler(FitboardError)
    def domain_error(request: Request, exc: FitboardError):
        if isinstance(exc, NotFound) and not request.url.path.startswith(API_PREFIX):
            return render(request, "not_found.html", 404, what=exc.what)
        if isinstance(exc, RecipeError):
            detail = _public_problems(request, exc.problems)
        else:
            detail = public(request, str(exc))
        headers = {"Retry-After": "5"} if exc.status_code == 503 else None
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

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
        return JSONResponse({"detail": problems}, status_code=422)

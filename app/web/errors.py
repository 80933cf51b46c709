"""The one place where domain errors become HTTP answers: JSON under /api, the not-found page for browsers."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app.core.errors import FitboardError, NotFound, RecipeError
from app.core.schemas import field_path
from app.pages.render import render

API_PREFIX = "/api/"


def _body_loc(loc: tuple) -> str:
    """A request-validation location as a field path, without FastAPI's leading 'body'."""
    return field_path(tuple(loc[1:] if loc[:1] == ("body",) else loc))


def install_error_handlers(app: FastAPI) -> None:
    """422 with a field path per problem, 404 unknown things, 409 conflicts; pages get the not-found page."""

    @app.exception_handler(FitboardError)
    def domain_error(request: Request, exc: FitboardError):
        if isinstance(exc, NotFound) and not request.url.path.startswith(API_PREFIX):
            return render(request, "not_found.html", 404, what=exc.what)
        detail = exc.problems if isinstance(exc, RecipeError) else str(exc)
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError):
        problems = [{"loc": _body_loc(tuple(e["loc"])), "msg": e["msg"]} for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

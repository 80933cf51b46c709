"""The web process: FastAPI app with the JSON API, the HTML pages, the SSE stream and static files."""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from swagger_ui_bundle import swagger_ui_path

from app import api, api_compare, pages, pages_compare
from app.db import default_database_url, make_engine, upgrade
from app.fastpath import RunCache, RunFastPath
from app.queue import make_celery
from app.runs import RunFinished, RunNotFound
from app.sweeps import SweepNotFound
from app.schemas import RecipeError, field_path
from app.security import BodyLimit, session_secret
from app.settings import Settings, get_settings

STATIC = Path(__file__).parent / "static"


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package: charts work on offline GPU hosts, no CDN."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _errors(app: FastAPI) -> None:
    """Every error is JSON: 422 with a field path per problem, 404 unknown ids, 409 finished runs."""

    @app.exception_handler(RecipeError)
    def recipe_error(request: Request, exc: RecipeError):
        return JSONResponse({"detail": exc.problems}, status_code=422)

    @app.exception_handler(RequestValidationError)
    def validation_error(request: Request, exc: RequestValidationError):
        problems = [{"loc": field_path(tuple(e["loc"][1:] if e["loc"][:1] == ("body",) else e["loc"])), "msg": e["msg"]}
                    for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(RunNotFound)
    @app.exception_handler(SweepNotFound)
    def not_found(request: Request, exc: LookupError):
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(RunFinished)
    def finished(request: Request, exc: RunFinished):
        return JSONResponse({"detail": str(exc)}, status_code=409)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app: schema brought up to date, database engine and queue client on app.state."""
    settings = settings or get_settings()
    url = default_database_url(settings)
    upgrade(url)
    app = FastAPI(title="fitboard", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Launch fastai training runs built from chapter-7 techniques and compare them.")
    app.state.settings, app.state.engine, app.state.celery = settings, make_engine(url), make_celery(settings)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie="fitboard_session",
                       same_site="strict", https_only=False, max_age=14 * 24 * 3600)
    app.add_middleware(BodyLimit)
    app.state.run_cache = RunCache()
    app.add_middleware(RunFastPath, outer=app)  # outermost: a cache hit skips every other layer
    _errors(app)
    app.include_router(api.router)
    app.include_router(api_compare.router)
    app.include_router(pages.router)
    app.include_router(pages_compare.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.mount("/vendor/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs():
        """Swagger UI from the installed swagger-ui-bundle package (FastAPI's default loads it from a CDN)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="fitboard API",
                                   swagger_js_url="/vendor/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/vendor/swagger/swagger-ui.css",
                                   swagger_favicon_url="/vendor/swagger/favicon-32x32.png")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def vendor_plotly():
        return FileResponse(plotly_js(), media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """Liveness: the process answers and the database is reachable."""
        with app.state.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    return app

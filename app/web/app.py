"""The web process: FastAPI app with the JSON API, the HTML pages, the SSE stream and static files."""
from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from swagger_ui_bundle import swagger_ui_path

from app.api import compare as api_compare
from app.api import datasets as api_datasets
from app.api import runs as api_runs
from app.api import sweeps as api_sweeps
from app.api import workers as api_workers
from app.core.resources import static_dir
from app.core.settings import Settings, get_settings
from app.pages import routes as page_routes
from app.services.queue import Publisher, make_celery
from app.store.db import default_database_url, make_engine, upgrade
from app.web.errors import install_error_handlers
from app.web.fastpath import RunCache, RunFastPath
from app.web.reconciler import reconciler_lifespan
from app.web.security import BodyLimit, session_secret

API_ROUTERS = (api_runs.router, api_datasets.router, api_workers.router, api_compare.router, api_sweeps.router)


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package: charts work on offline GPU hosts, no CDN."""
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _vendor_routes(app: FastAPI) -> None:
    """Swagger UI, plotly and the health check: served from installed packages, never a CDN."""
    app.mount("/vendor/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def get_docs():
        """Swagger UI from the installed swagger-ui-bundle package (FastAPI's default loads it from a CDN)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="fitboard API",
                                   swagger_js_url="/vendor/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/vendor/swagger/swagger-ui.css",
                                   swagger_favicon_url="/vendor/swagger/favicon-32x32.png")

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def get_plotly():
        return FileResponse(plotly_js(), media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", tags=["health"])
    def get_healthz() -> dict:
        """Liveness: the process answers and the database is reachable."""
        with app.state.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok"}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app: schema brought up to date, database engine and publisher on app.state."""
    settings = settings or get_settings()
    url = default_database_url(settings)
    upgrade(url)
    app = FastAPI(title="fitboard", version="0.1.0", docs_url=None, redoc_url=None, lifespan=reconciler_lifespan,
                  description="Launch fastai training runs built from chapter-7 techniques and compare them.")
    app.state.settings, app.state.engine = settings, make_engine(url)
    app.state.publisher = Publisher(make_celery(settings))
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings), session_cookie="fitboard_session",
                       same_site="strict", https_only=False, max_age=14 * 24 * 3600)
    app.add_middleware(BodyLimit)
    app.state.run_cache = RunCache()
    app.add_middleware(RunFastPath, outer=app)  # outermost: a cache hit skips every other layer
    install_error_handlers(app)
    for router in API_ROUTERS:
        app.include_router(router)
    app.include_router(page_routes.router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    _vendor_routes(app)
    return app

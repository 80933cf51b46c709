"""The web process: FastAPI app with the JSON API, the HTML pages, the SSE stream and static files."""
from __future__ import annotations

import threading

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from fitboard.app.api import compare as api_compare
from fitboard.app.api import datasets as api_datasets
from fitboard.app.api import people as api_people
from fitboard.app.api import predictions as api_predictions
from fitboard.app.api import queue as api_queue
from fitboard.app.api import runs as api_runs
from fitboard.app.api import searches as api_searches
from fitboard.app.api import sweeps as api_sweeps
from fitboard.app.api import tracked as api_tracked
from fitboard.app.api import workers as api_workers
from fitboard.app.core.credentials import prepare_dummy
from fitboard.app.core.redact import install_log_redaction
from fitboard.app.core.resources import static_dir
from fitboard.app.core.settings import Settings, get_settings
from fitboard.app.pages import routes as page_routes
from fitboard.app.services.queue import Publisher, make_celery
from fitboard.app.services.serializers import HealthOut
from fitboard.app.store.db import default_database_url, make_engine, upgrade, web_pool
from fitboard.app.web.admission import Admission
from fitboard.app.web.docs import install_vendor_routes
from fitboard.app.web.errors import install_error_handlers
from fitboard.app.web.fastpath import RunCache, RunFastPath
from fitboard.app.web.gate import BodyFirst, IdentityGate
from fitboard.app.web.middleware import BodyLimit, CompleteAllow, WebGuard
from fitboard.app.web.openapi import install_openapi
from fitboard.app.web.principals import Directory
from fitboard.app.web.reconciler import reconciler_lifespan
from fitboard.app.web.security import (
    SESSION_COOKIE,
    SESSION_MAX_AGE,
    AuthThrottle,
    SessionEpoch,
    check_token_strength,
    private_home,
    session_secret,
)
from fitboard.app.web.sse import StreamHub

PREDICT_WAITERS = 8
API_ROUTERS = (api_people.router, api_runs.router, api_datasets.router, api_workers.router, api_queue.router,
               api_compare.router, api_sweeps.router, api_searches.router, api_predictions.router, api_tracked.router)


def _health_route(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"], response_model=HealthOut)
    def get_healthz() -> dict:
        """Liveness: the process answers and the database is reachable (no token needed)."""
        with app.state.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok"}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app: schema brought up to date, database engine and publisher on app.state."""
    settings = settings or get_settings()
    check_token_strength(settings)
    prepare_dummy()
    install_log_redaction()
    private_home(settings)
    url = default_database_url(settings)
    upgrade(url)
    app = FastAPI(title="fitboard", version="0.1.0", docs_url=None, redoc_url=None, lifespan=reconciler_lifespan,
                  description="Launch fastai training runs built from chapter-7 techniques and compare them.")
    app.state.settings, app.state.engine = settings, make_engine(url, **web_pool(url, settings.max_requests))
    app.state.publisher = Publisher(make_celery(settings))
    app.state.session_secret = session_secret(settings)
    app.state.session_epoch = SessionEpoch(settings.home)
    app.state.auth_throttle = AuthThrottle(settings.auth_failures_per_minute)
    app.state.account_throttle = AuthThrottle(settings.auth_failures_per_minute)  # failed logins per account
    app.state.directory = Directory()
    app.state.streams = StreamHub(app.state.engine, settings.max_streams, settings.stream_lifetime)
    app.state.run_cache = RunCache()
    # POST .../predict requests waiting in a thread for their answer; past this many, the answer is 202 at once
    app.state.predict_waiting = threading.BoundedSemaphore(PREDICT_WAITERS)
    # Added innermost first: WebGuard (Host, cross-site, headers) wraps everything, the fast path included.
    app.add_middleware(SessionMiddleware, secret_key=app.state.session_secret, session_cookie=SESSION_COOKIE,
                       same_site="strict", https_only=False, max_age=SESSION_MAX_AGE)
    app.add_middleware(CompleteAllow, outer=app)
    app.add_middleware(RunFastPath, outer=app)  # a cache hit skips every layer below
    # Admission holds back requests past max_requests, so those inside always find a thread and a connection.
    app.add_middleware(Admission, limit=settings.max_requests, wait=settings.request_wait,
                       backlog=settings.request_backlog)
    # Outside admission: credentials checked on the headers, then the body read whole (bounded in size and time),
    # so neither a client without credentials nor a slow one ever holds a slot.
    app.add_middleware(BodyFirst, timeout=settings.body_timeout)
    app.add_middleware(BodyLimit)
    app.add_middleware(IdentityGate, outer=app)
    app.add_middleware(WebGuard, settings=settings)
    install_error_handlers(app)
    for router in API_ROUTERS:
        app.include_router(router)
    app.include_router(page_routes.router)
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    install_vendor_routes(app)
    _health_route(app)
    install_openapi(app)
    return app

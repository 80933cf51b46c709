"""Interactive API docs and the vendored assets: served from installed packages, never a CDN."""
from __future__ import annotations

import functools
from html import escape
from pathlib import Path

import fastapi_offline
import plotly
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from fitboard.app.core.settings import Settings
from fitboard.app.web.deps import SettingsDep
from fitboard.app.web.security import csrf_token

# fastapi-offline ships Swagger UI 5 (which reads the OpenAPI 3.1 document FastAPI writes) as plain files.
SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>fitboard API</title>
  <meta name="csrf-token" content="{csrf}">
  <link rel="icon" href="/vendor/swagger/favicon.png">
  <link rel="stylesheet" href="/vendor/swagger/swagger-ui.css">
  <script src="/vendor/swagger/swagger-ui-bundle.js" defer></script>
  <script src="/static/docs.js" defer></script>
</head>
<body><div id="swagger-ui"></div></body>
</html>
"""


def plotly_js(settings: Settings | None = None) -> Path:
    """The plotly.js bundle the pages load: settings.plotly_js when set, else plotly.min.js from the installed plotly
    package (charts work on offline GPU hosts, no CDN)."""
    if settings is not None and settings.plotly_js is not None:
        return settings.plotly_js
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@functools.lru_cache(maxsize=4)
def _strict(path: Path) -> bool:
    """Whether the bundle at path is a strict build ("plotly.js (strict - minified) v4.1.1" in its header)."""
    try:
        with path.open("rb") as f:
            return b"(strict" in f.read(300)
    except OSError:
        return False


def webgl_charts(settings: Settings) -> bool:
    """Whether the served Plotly can draw WebGL traces under the pages' CSP: its WebGL library (regl) compiles its
    draw calls with new Function(), which script-src 'self' refuses, unless the bundle is a strict build that carries
    them precompiled. With the installed package's plotly.min.js, Plotly would show "WebGL is not supported" instead
    of the chart, so the pages draw SVG."""
    return _strict(plotly_js(settings))


def install_vendor_routes(app: FastAPI) -> None:
    """/docs (Swagger UI), the Swagger UI and plotly files, and the health check."""
    app.mount("/vendor/swagger", StaticFiles(directory=SWAGGER_DIR), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def get_docs(request: Request):
        """Swagger UI over /openapi.json; 'Try it out' calls the API with this browser's session (or a token
        entered under 'Authorize')."""
        return HTMLResponse(DOCS_PAGE.format(csrf=escape(csrf_token(request))))

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def get_plotly(settings: SettingsDep):
        return FileResponse(plotly_js(settings), media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

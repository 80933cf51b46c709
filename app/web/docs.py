"""Interactive API docs and the vendored assets: served from installed packages, never a CDN."""
from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
import plotly
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

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


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package: charts work on offline GPU hosts, no CDN."""
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def install_vendor_routes(app: FastAPI) -> None:
    """/docs (Swagger UI), the Swagger UI and plotly files, and the health check."""
    app.mount("/vendor/swagger", StaticFiles(directory=SWAGGER_DIR), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def get_docs(request: Request):
        """Swagger UI over /openapi.json; 'Try it out' calls the API with this browser's session (or a token
        entered under 'Authorize')."""
        return HTMLResponse(DOCS_PAGE.format(csrf=escape(csrf_token(request))))

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def get_plotly():
        return FileResponse(plotly_js(), media_type="application/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

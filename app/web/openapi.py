"""The OpenAPI document as the server behaves: the bearer scheme, the recipe (RunSpec) schema the POST /runs body
refers to, and which operations need no token."""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from fitboard.app.core.schemas import RunSpec

BEARER = {"type": "http", "scheme": "bearer",
          "description": "FITBOARD_API_TOKEN, when the server has one (a logged-in browser session also works; its "
                         "writes need the X-CSRF-Token header). Without a token configured, no scheme is needed."}
OPEN_PATHS = ("/healthz",)  # answered without a token
# Any call can meet a full server (fitboard.app.web.admission): 503 with Retry-After, as every other 503 here
BUSY = "the server is busy (too many requests in progress): retry after Retry-After seconds"
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}
EVENT_STREAM = ("server-sent events: `epoch` (data: an epoch row, id: its ordinal), `progress` (data: the batch "
                "progress), `status` (data: the run, in full once it finished)")


def install_openapi(app: FastAPI) -> None:
    """Replace app.openapi with one that completes FastAPI's document (built once, then cached)."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = doc.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            # The POST /runs body is a RunSpec validated by the service (for its field-path errors): its schema and
            # the ones it refers to go into components, where the $refs point.
            spec = RunSpec.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, schema in spec.pop("$defs", {}).items():
                schemas.setdefault(name, schema)
            schemas.setdefault("RunSpec", spec)
            components["securitySchemes"] = {"bearer": BEARER}
            for path, operations in doc.get("paths", {}).items():
                for operation in operations.values():
                    operation["security"] = [] if path in OPEN_PATHS else [{"bearer": []}]
                    for media in operation.get("requestBody", {}).get("content", {}).values():
                        if "$ref" in media.get("schema", {}):  # a body schema given in openapi_extra: only the ref
                            media["schema"] = {"$ref": media["schema"]["$ref"]}
                    busy = operation["responses"].setdefault("503", {"description": BUSY})
                    busy["headers"] = {"Retry-After": RETRY_AFTER}
                    _errors_as_json(operation["responses"])
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi


def _errors_as_json(responses: dict) -> None:
    """Error bodies are JSON on every route (FastAPI would give a file or event-stream route's errors that route's
    media type); the event stream's events are named."""
    for code, response in responses.items():
        content = response.get("content") or {}
        if code[:1] in "45":
            model = "ValidationErrorOut" if code == "422" else "ErrorOut"
            response["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}
        elif "itemSchema" in content.get("text/event-stream", {}):
            content["text/event-stream"].pop("schema", None)  # the stream as a whole: not a string, its events
            item = content["text/event-stream"]["itemSchema"]  # one event (OpenAPI 3.2's itemSchema, as FastAPI says)
            item["description"] = EVENT_STREAM
            item["properties"]["event"]["enum"] = ["epoch", "progress", "status"]

"""The HTTP layer: httpx with timeouts and connect retries, the bearer token, errors carrying the API's detail."""
from __future__ import annotations

import os

import httpx

from fitboard.errors import Unreachable, error_for

API = "/api/v1"
DEFAULT_URL = "http://127.0.0.1:8000"


class Http:
    """One httpx client to one fitboard server; every call answers JSON or raises a FitboardError."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0, retries: int = 3,
                 project: str | None = None):
        self.url = (url or os.environ.get("FITBOARD_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("FITBOARD_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Every call names the project: lists show its things and new runs, sweeps and searches land in it; a call
        # about one thing (a run by id) is about that thing's project whatever this says.
        self.project = project or os.environ.get("FITBOARD_PROJECT") or None
        params = {"project": self.project} if self.project else {}
        # httpx's transport retries failed connects (server restarting); reads are bounded by the timeout.
        self.timeout = httpx.Timeout(timeout, connect=min(5.0, timeout))
        self.client = httpx.Client(base_url=self.url, headers=headers, params=params, timeout=self.timeout,
                                   transport=httpx.HTTPTransport(retries=retries))

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Send one request under /api/v1 (unless path is absolute); raise on an error status."""
        full = path if path.startswith("/") else f"{API}/{path}"
        try:
            response = self.client.request(method, full, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(0, f"{self.url} did not answer: {exc}", method, full) from exc
        check(response, method, full)
        return response

    def json(self, method: str, path: str, **kwargs):
        """The JSON body of a request."""
        return self.request(method, path, **kwargs).json()

    def close(self) -> None:
        self.client.close()


def check(response: httpx.Response, method: str, path: str) -> None:
    """Raise the FitboardError for an error status, with the API's detail (or the body's start)."""
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:500]
    raise error_for(response.status_code, detail, method, path)

"""`fitboard predict RUN IMAGE...`: send images to a succeeded run's model on a fitboard server, print the top 5."""
from __future__ import annotations

import json
import mimetypes
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from fitboard.worker.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from fitboard.worker.cli.submit import DEFAULT_URL

POLL_SECONDS = 0.2
GIVE_UP_AFTER = 600.0


def _multipart(paths: list[Path]) -> tuple[bytes, str]:
    """The images as a multipart/form-data body (field "images"), and its content type."""
    boundary = f"fitboard-{uuid.uuid4().hex}"
    parts = []
    for path in paths:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        name = path.name.replace('"', "_")
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
                     f"Content-Type: {kind}\r\n\r\n".encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _call(url: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of one API call, with the token when FITBOARD_API_TOKEN is set."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    if os.environ.get("FITBOARD_API_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['FITBOARD_API_TOKEN']}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=150) as r:
            return r.status, json.load(r), dict(r.headers)
    except urllib.error.HTTPError as exc:
        try:
            detail = json.load(exc)
        except ValueError:
            detail = {"detail": exc.reason}
        return exc.code, detail, dict(exc.headers)


def _problem(body: dict) -> str:
    detail = body.get("detail")
    if isinstance(detail, list):
        return "; ".join(f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"] for p in detail)
    return str(detail)


def cmd_predict(args) -> int:
    """Post the images, wait for the answer (polling while a model loads), print it."""
    base = (args.url or os.environ.get("FITBOARD_URL") or DEFAULT_URL).rstrip("/")
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"not a file: {', '.join(missing)}", file=sys.stderr)
        return EXIT_INVALID
    body, content_type = _multipart(paths)
    try:
        status, doc, headers = _call(f"{base}/api/v1/runs/{args.run}/predict", body, content_type)
        deadline = time.monotonic() + GIVE_UP_AFTER
        while status == 202 and time.monotonic() < deadline:
            if doc.get("note") and not args.json:
                print(f"... {doc['note']}", file=sys.stderr)
            time.sleep(POLL_SECONDS)
            status, doc, headers = _call(base + headers.get("Location", f"/api/v1/predictions/{doc['id']}"))
    except urllib.error.URLError as exc:
        print(f"cannot reach {base}: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED
    if status != 200:
        print(f"refused ({status}): {_problem(doc)}", file=sys.stderr)
        return EXIT_INVALID if status in (413, 422) else EXIT_FAILED
    if args.json:
        print(json.dumps(doc, indent=2))
    elif doc["status"] == "done":
        for result in doc["results"]:
            print(result["name"])
            for t in result["top"]:
                print(f"  {t['probability']:7.2%}  {t['label']}")
    if doc["status"] != "done":
        print(f"prediction failed: {doc.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def add_commands(sub) -> None:
    """predict."""
    p = sub.add_parser("predict", help="send images to a succeeded run's model on a server; print the top 5 classes")
    p.add_argument("run", type=int)
    p.add_argument("images", nargs="+", help="image files (up to 16, 10 MB in all)")
    p.add_argument("--url", help=f"server (default $FITBOARD_URL or {DEFAULT_URL})")
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    p.set_defaults(func=cmd_predict)

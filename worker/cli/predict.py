"""`fitboard predict RUN IMAGE...`: send images to a succeeded run's model on a fitboard server, print the top 5
(through fitboard.Client)."""
from __future__ import annotations

import json
from pathlib import Path

from fitboard.errors import FitboardError
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, add_url, client_for, refused, say, warn


def _print_answer(doc: dict) -> None:
    """Each image's name, then its top classes with their probabilities."""
    for result in doc["results"]:
        say(result["name"])
        for t in result["top"]:
            say(f"  {t['probability']:7.2%}  {t['label']}")


def cmd_predict(args) -> int:
    """Post the images, wait for the answer (polling while a model loads), print it."""
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        warn(f"not a file: {', '.join(missing)}")
        return EXIT_INVALID
    on_wait = None if args.json else (lambda answer: answer.get("note") and warn(f"... {answer['note']}"))
    with client_for(args) as client:
        try:
            doc = client.run(args.run).prediction(paths, on_wait=on_wait)
        except FitboardError as exc:
            return refused(exc, client.url)
        except TimeoutError as exc:
            warn(str(exc))
            return EXIT_FAILED
    if args.json:
        say(json.dumps(doc, indent=2))
    elif doc["status"] == "done":
        _print_answer(doc)
    if doc["status"] != "done":
        warn(f"prediction failed: {doc.get('error')}")
        return EXIT_FAILED
    return EXIT_OK


def add_commands(sub) -> None:
    """predict."""
    p = sub.add_parser("predict", help="send images to a succeeded run's model on a server; print the top 5 classes")
    p.add_argument("run", type=int)
    p.add_argument("images", nargs="+", help="image files (up to 16, 10 MB in all)")
    add_url(p)
    p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    p.set_defaults(func=cmd_predict)

"""`fitboard search BASE.yaml --space SPACE.yaml --trials N`: start a search on a fitboard server and, with
--follow, print each trial as it ends and the verify sweep's verdicts."""
from __future__ import annotations

import json
import os
import time

import yaml

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.recipes import read_recipe_file
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_OK
from fitboard.worker.cli.submit import DEFAULT_URL, api_request, post_or_refuse

POLL_SECONDS = 3.0
MAX_SPACE_BYTES = 1_000_000


def _read_space(path: str) -> dict:
    """The space file (YAML or JSON): {field path: [choices] or {int|float|log: [low, high]}}."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(MAX_SPACE_BYTES + 1)
    except OSError as exc:
        raise RecipeError.one(path, f"cannot read the space file: {exc.strerror}") from None
    if len(text) > MAX_SPACE_BYTES:
        raise RecipeError.one(path, "the space file is over 1 MB")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError.one(path, f"not valid YAML: {str(exc).splitlines()[0]}") from None


def _trial_line(t: dict, metric: str) -> str:
    """One ended trial in words."""
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in t["params"].items())
    if t["status"] == "pruned":
        how = f"pruned at epoch {t['pruned']['epoch']}"
    elif t["status"] == "succeeded" and t["value"] is not None:
        how = f"{metric} {t['value']:.4f}"
    else:
        how = t["status"] + (f" ({t['error'][:200]})" if t.get("error") else "")
    return f"trial {t['number']} (run {t['run_id']}): {how} [{params}] after {t['epochs']} epochs"


def follow(base: str, search_id: int) -> int:
    """Print each trial as it ends, then the budget and verdicts; exit 0 when the search is done."""
    said, verifying = set(), False
    while True:
        with api_request(f"{base}/api/v1/searches/{search_id}") as response:
            s = json.load(response)
        for t in s["trials"]:
            if t["number"] not in said and t["status"] in ("succeeded", "failed", "cancelled", "pruned"):
                said.add(t["number"])
                print(_trial_line(t, s["options"]["metric"]), flush=True)
        if s["status"] == "verifying" and not verifying:
            verifying = True
            print(f"search {search_id}: budget spent; verifying on sweep {s['verify']['sweep_id']}", flush=True)
        if s["status"] in ("done", "failed", "cancelled"):
            b = s["budget"]
            print(f"search {search_id}: {s['status']}" + (f" ({s['reason']})" if s.get("reason") else ""))
            print(f"budget: {b['epochs_trained']} epochs trained of {b['epochs_if_all_full']} for every trial in full"
                  + (f", {b['epochs_full_grid']} for the full grid" if b.get("epochs_full_grid") else ""))
            for w in (s.get("verify") or {}).get("winners", []):
                print(f"verified: {w['verdict']} (search {s['options']['metric']} {w['search_value']:.4f}, "
                      f"verified mean accuracy {w['verified']['mean']})")
            return EXIT_OK if s["status"] == "done" else EXIT_FAILED
        time.sleep(POLL_SECONDS)


def cmd_search(args) -> int:
    """Post a search; print its id (and follow it with --follow)."""
    base = (args.url or os.environ.get("FITBOARD_URL") or DEFAULT_URL).rstrip("/")
    options = {k: v for k, v in {"max_trials": args.trials, "max_parallel": args.parallel, "pruner": args.pruner,
                                 "sampler": args.sampler, "metric": args.metric, "k": args.k,
                                 "seeds": args.seeds}.items() if v is not None}
    search = post_or_refuse(base, "searches", lambda: {"base": read_recipe_file(args.recipe),
                                                       "space": _read_space(args.space), "options": options})
    if isinstance(search, int):
        return search
    print(f"search {search['id']} started (Optuna study {search['study_name']}): {base}/searches/{search['id']}",
          flush=True)
    return follow(base, search["id"]) if args.follow else EXIT_OK


def add_commands(sub) -> None:
    """search."""
    p = sub.add_parser("search", help="search a space around a recipe with pruning, then verify the winners")
    p.add_argument("recipe", help="the base recipe (YAML or JSON)")
    p.add_argument("--space", required=True, help="YAML/JSON: {field path: [choices] or {int|float|log: [lo, hi]}}")
    p.add_argument("--trials", type=int, help="max_trials (default 20, at most FITBOARD_MAX_SWEEP_RUNS)")
    p.add_argument("--parallel", type=int, help="max_parallel (default: the live workers)")
    p.add_argument("--pruner", choices=("asha", "hyperband", "median", "none"))
    p.add_argument("--sampler", choices=("tpe", "random", "grid"))
    p.add_argument("--metric", choices=("accuracy", "error_rate", "valid_loss"))
    p.add_argument("--k", type=int, help="configurations the verify sweep checks (default 2)")
    p.add_argument("--seeds", type=int, help="fresh seeds of the verify sweep (default 3)")
    p.add_argument("--url", help="server URL (default $FITBOARD_URL or http://127.0.0.1:8000)")
    p.add_argument("--follow", action="store_true", help="print each trial as it ends, then the verdicts")
    p.set_defaults(func=cmd_search)
